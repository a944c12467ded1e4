"""Raspberry Pi Pico W board: builds the real pins, Wi-Fi, watchdog and device id.
Deployed as /board.py next to /main.py. Pin map below is the reference wiring in docs/hardware.md."""

from mcu_board import McuBoard

BUTTON_GPIO = {"5": 2, "4": 3, "3": 4, "2": 5, "1": 6, "invite": 7}  # to GND, pull-up
LED_GPIO = {"b5": 10, "b4": 11, "b3": 12, "b2": 13, "b1": 14, "ok": 15, "err": 16}
RP2_WDT_MAX_MS = 8388  # the RP2040 watchdog cannot count longer


def Board():
    import machine
    import network

    buttons = {n: machine.Pin(g, machine.Pin.IN, machine.Pin.PULL_UP) for n, g in BUTTON_GPIO.items()}
    leds = {n: machine.Pin(g, machine.Pin.OUT, value=0) for n, g in LED_GPIO.items()}
    uid = machine.unique_id()
    board = McuBoard("rp2_pico_w", buttons, leds, network.WLAN(network.STA_IF),
                     lambda ms: machine.WDT(timeout=min(ms, RP2_WDT_MAX_MS)), uid, machine.reset)
    return board
