// Minimal host stand-in for the Arduino core, so tests can build and run the example sketch
// (tests/test_firmware_c.py). Serial writes go to stdout; Serial reads come from stdin.
#ifndef VIGIL_ARDUINO_HOST_H
#define VIGIL_ARDUINO_HOST_H
#include <stddef.h>
#include <stdint.h>

uint32_t millis();

class HostSerial {
public:
    void begin(unsigned long baud);
    size_t write(uint8_t byte);
    size_t write(const uint8_t *data, size_t len);
    int available();
    int read();
};

extern HostSerial Serial;

void setup();
void loop();
#endif
