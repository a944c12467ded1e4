# Runs under MicroPython: reads lines "x<keyhex> x<msghex>" on stdin, prints HMAC-SHA256 hex for each.
import sys, binascii
from hmac_sha256 import hmac_sha256

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    k, m = line.split(" ")
    print(binascii.hexlify(hmac_sha256(binascii.unhexlify(k[1:]), binascii.unhexlify(m[1:]))).decode())
