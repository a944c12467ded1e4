# Runs under MicroPython: reads lines "x<keyhex> x<msghex>" on stdin, prints HMAC-SHA256 hex for each.
import sys, binascii
from hmac_sha256 import HMAC

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    k, m = line.split(" ")
    print(binascii.hexlify(HMAC(binascii.unhexlify(k[1:])).digest(binascii.unhexlify(m[1:]))).decode())
