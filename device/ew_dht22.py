# DHT22 (AM2302) on one GPIO, through MicroPython's own `dht` module.


class DHT22:
    def __init__(self, pin, name="dht22"):
        import dht

        self.name = name
        self._dht = dht.DHT22(pin)

    def read(self):
        self._dht.measure()
        return {"temp_c": self._dht.temperature(), "rh": self._dht.humidity()}
