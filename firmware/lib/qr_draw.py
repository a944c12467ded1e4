"""Draws a QR matrix sent by the gateway (packed bits, see hcp/qr.py) into a framebuf.FrameBuffer,
for boards with a panel. The device never encodes QR codes itself (docs/firmware.md says why)."""


def module(size, bits, x, y):
    """1 if module (x, y) is dark."""
    i = y * size + x
    return (bits[i >> 3] >> (7 - (i & 7))) & 1


def draw(fb, size, bits, x0, y0, scale=1, quiet=4):
    """Draw at (x0, y0) with `scale` pixels per module and a light quiet zone of `quiet` modules.
    Dark modules are colour 1. -> the side length drawn, in pixels."""
    side = (size + 2 * quiet) * scale
    fb.fill_rect(x0, y0, side, side, 0)
    ox = x0 + quiet * scale
    oy = y0 + quiet * scale
    for y in range(size):
        row = y * size
        for x in range(size):
            i = row + x
            if (bits[i >> 3] >> (7 - (i & 7))) & 1:
                fb.fill_rect(ox + x * scale, oy + y * scale, scale, scale, 1)
    return side
