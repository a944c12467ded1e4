# Runs under MicroPython: draws the matrix given as "size hexbits" on stdin into a real
# framebuf.FrameBuffer with qr_draw.draw (scale 2, quiet zone 4) and prints the pixel rows as 0/1.
import sys, binascii, framebuf
import qr_draw

size, hexbits = sys.stdin.readline().split()
size = int(size)
bits = binascii.unhexlify(hexbits)
side = (size + 8) * 2
buf = bytearray(((side + 7) // 8) * side)
fb = framebuf.FrameBuffer(buf, side, side, framebuf.MONO_HLSB)
fb.fill(1)
drawn = qr_draw.draw(fb, size, bits, 0, 0, scale=2, quiet=4)
print(drawn)
for y in range(side):
    print("".join(str(fb.pixel(x, y)) for x in range(side)))
