// Runs an Arduino sketch on the host against simulated time: `sketch DURATION_MS < commands`.
// All of stdin is available to Serial.read() from time 0; millis() advances 1 ms per loop().
#include "arduino_host.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

HostSerial Serial;

static uint32_t now_ms = 0;
static std::vector<uint8_t> input;
static size_t input_pos = 0;

uint32_t millis() { return now_ms; }

void HostSerial::begin(unsigned long baud) { (void)baud; }

size_t HostSerial::write(uint8_t byte) { return std::fwrite(&byte, 1, 1, stdout); }

size_t HostSerial::write(const uint8_t *data, size_t len) {
    return std::fwrite(data, 1, len, stdout);
}

int HostSerial::available() { return static_cast<int>(input.size() - input_pos); }

int HostSerial::read() { return input_pos < input.size() ? input[input_pos++] : -1; }

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DURATION_MS < commands\n", argv[0]);
        return 2;
    }
    const uint32_t duration_ms = static_cast<uint32_t>(std::strtoul(argv[1], nullptr, 10));
    int c;
    while ((c = std::getchar()) != EOF) {
        input.push_back(static_cast<uint8_t>(c));
    }
    setup();
    for (now_ms = 0; now_ms <= duration_ms; ++now_ms) {
        loop();
    }
    return 0;
}
