"""ESP32 (generic DevKit) board: builds the real pins, Wi-Fi, watchdog and device id.
Deployed as /board.py next to /main.py. Pin map below is the reference wiring in docs/hardware.md."""

from mcu_board import McuBoard

BUTTON_GPIO = {"5": 32, "4": 33, "3": 25, "2": 26, "1": 27, "invite": 14}  # to GND, pull-up
LED_GPIO = {"b5": 15, "b4": 2, "b3": 4, "b2": 16, "b1": 17, "ok": 18, "err": 19}


def Board():
    import machine
    import network

    buttons = {n: machine.Pin(g, machine.Pin.IN, machine.Pin.PULL_UP) for n, g in BUTTON_GPIO.items()}
    leds = {n: machine.Pin(g, machine.Pin.OUT, value=0) for n, g in LED_GPIO.items()}
    uid = machine.unique_id()
    board = McuBoard("esp32", buttons, leds, network.WLAN(network.STA_IF),
                     lambda ms: machine.WDT(timeout=ms), uid, machine.reset)
    return board
