/*
 * Test driver for firmware_bridge/firmware/vigil_frame.c (used by tests/test_firmware_c.py).
 *
 * Reads one command per line on stdin, writes one answer line on stdout:
 *   H cap seq ts major minor patch board_id sensors ecg ppg resp period  -> wire hex | ERR
 *   V cap seq ts valid hr spo2 rr sbp dbp map temp                       -> wire hex | ERR
 *   W cap seq ts channel rate gain_bits baseline first n s1 .. sn        -> wire hex | ERR
 *   P cap seq ts channel n i1 .. in                                      -> wire hex | ERR
 *   S cap seq ts flags battery fault                                     -> wire hex | ERR
 *   A cap seq ts acked_seq acked_type result nonce                       -> wire hex | ERR
 *   R cap seq ts type payload_hex|-                                      -> wire hex | ERR
 *   K cap data_hex|-                 (COBS only, no delimiter)           -> hex | ERR
 *   C data_hex|-                     (CRC-16/CCITT-FALSE)                -> 4 hex digits
 *   D chunk_hex|-                    (vigil_decode_command)              -> command | E<rc>
 *   N                                (next sequence number)               -> decimal
 *   X stream_hex                     (vigil_receiver_push, fresh receiver, every byte)
 *                                    -> space-separated results: command or E<rc>, "-" if none
 * `cap` is the output capacity handed to the encoder; the bytes after it are a canary and the
 * driver aborts (exit 3) if the library wrote past `cap`. A command prints as
 *   P seq ts nonce   |   T seq ts ecg ppg period   |   U type seq ts (unknown type, for ACK)
 * Stdio lives here, never in the library.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vigil_frame.h"

#define BUF_CAP 4096
#define CANARY 0xA5u

static uint8_t out[BUF_CAP + 64];
static uint8_t data[BUF_CAP];
static int16_t samples[VIGIL_MAX_WAVEFORM_SAMPLES + 8];
static uint32_t pulses[VIGIL_MAX_PACE_PULSES + 8];
static char hexbuf[2 * BUF_CAP + 8];

static unsigned long rd(void)
{
    unsigned long v;
    if (scanf("%lu", &v) != 1) {
        fprintf(stderr, "driver: expected an unsigned number\n");
        exit(2);
    }
    return v;
}

static long rd_signed(void)
{
    long v;
    if (scanf("%ld", &v) != 1) {
        fprintf(stderr, "driver: expected a number\n");
        exit(2);
    }
    return v;
}

static size_t rd_hex(uint8_t *dst)
{
    size_t n, i;
    unsigned int b;
    if (scanf("%8199s", hexbuf) != 1) {
        fprintf(stderr, "driver: expected hex\n");
        exit(2);
    }
    if (strcmp(hexbuf, "-") == 0) {
        return 0;
    }
    n = strlen(hexbuf) / 2;
    for (i = 0; i < n; ++i) {
        if (sscanf(hexbuf + 2 * i, "%2x", &b) != 1) {
            fprintf(stderr, "driver: bad hex\n");
            exit(2);
        }
        dst[i] = (uint8_t)b;
    }
    return n;
}

static size_t arm(size_t cap)
{
    if (cap > BUF_CAP) {
        cap = BUF_CAP;
    }
    memset(out, CANARY, sizeof out);
    return cap;
}

static void emit(size_t n, size_t cap)
{
    size_t i;
    for (i = cap; i < sizeof out; ++i) {
        if (out[i] != CANARY) {
            fprintf(stderr, "driver: library wrote past cap=%lu at %lu\n", (unsigned long)cap,
                    (unsigned long)i);
            exit(3);
        }
    }
    if (n == 0) {
        printf("ERR\n");
        return;
    }
    for (i = 0; i < n; ++i) {
        printf("%02x", out[i]);
    }
    printf("\n");
}

static void print_command(vigil_rc_t rc, const vigil_command_t *c)
{
    if (rc == VIGIL_OK && c->type == VIGIL_TYPE_PING) {
        printf("P %u %lu %lu", c->seq, (unsigned long)c->timestamp_ms, (unsigned long)c->nonce);
    } else if (rc == VIGIL_OK) {
        printf("T %u %lu %u %u %u", c->seq, (unsigned long)c->timestamp_ms, c->ecg_rate_hz,
               c->ppg_rate_hz, c->vitals_period_ms);
    } else if (rc == VIGIL_ERR_TYPE) {
        printf("U %u %u %lu", c->type, c->seq, (unsigned long)c->timestamp_ms);
    } else {
        printf("E%d", (int)rc);
    }
}

int main(void)
{
    char op[4];
    vigil_encoder_t enc;
    vigil_encoder_init(&enc);
    if (enc.next_seq != 0) {
        return 4;
    }
    while (scanf("%3s", op) == 1) {
        size_t cap, n = 0, len, i;
        uint32_t ts;
        switch (op[0]) {
        case 'C':
            len = rd_hex(data);
            printf("%04x\n", vigil_crc16(data, len));
            continue;
        case 'K':
            cap = arm(rd());
            len = rd_hex(data);
            emit(vigil_cobs_encode(data, len, out, cap), cap);
            continue;
        case 'N':
            printf("%u\n", enc.next_seq);
            continue;
        case 'D': {
            vigil_command_t c;
            len = rd_hex(data);
            print_command(vigil_decode_command(data, len, &c), &c);
            printf("\n");
            continue;
        }
        case 'X': {
            vigil_receiver_t rx;
            vigil_command_t c;
            int any = 0;
            vigil_receiver_init(&rx);
            len = rd_hex(data);
            for (i = 0; i < len; ++i) {
                vigil_rc_t rc = vigil_receiver_push(&rx, data[i], &c);
                if (rc != VIGIL_PENDING) {
                    if (any) {
                        printf(" ");
                    }
                    print_command(rc, &c);
                    any = 1;
                }
            }
            printf(any ? "\n" : "-\n");
            continue;
        }
        default:
            break;
        }
        cap = arm(rd());
        enc.next_seq = (uint16_t)rd();
        ts = (uint32_t)rd();
        if (op[0] == 'H') {
            vigil_hello_t m;
            m.fw_major = (uint8_t)rd();
            m.fw_minor = (uint8_t)rd();
            m.fw_patch = (uint8_t)rd();
            m.board_id = (uint32_t)rd();
            m.sensors = (uint16_t)rd();
            m.ecg_rate_hz = (uint16_t)rd();
            m.ppg_rate_hz = (uint16_t)rd();
            m.resp_rate_hz = (uint16_t)rd();
            m.vitals_period_ms = (uint16_t)rd();
            n = vigil_encode_hello(&enc, ts, &m, out, cap);
        } else if (op[0] == 'V') {
            vigil_vitals_t m;
            m.valid = (uint8_t)rd();
            m.hr_dbpm = (uint16_t)rd();
            m.spo2_dpct = (uint16_t)rd();
            m.rr_dbrpm = (uint16_t)rd();
            m.sbp_dmmhg = (uint16_t)rd();
            m.dbp_dmmhg = (uint16_t)rd();
            m.map_dmmhg = (uint16_t)rd();
            m.temp_cdegc = (int16_t)rd_signed();
            n = vigil_encode_vitals(&enc, ts, &m, out, cap);
        } else if (op[0] == 'W') {
            vigil_waveform_t m;
            uint32_t bits;
            m.channel = (uint8_t)rd();
            m.rate_hz = (uint16_t)rd();
            bits = (uint32_t)rd();
            memcpy(&m.gain, &bits, sizeof bits);
            m.baseline = (int16_t)rd_signed();
            m.first_sample = (uint32_t)rd();
            m.n_samples = (uint16_t)rd();
            if (m.n_samples > VIGIL_MAX_WAVEFORM_SAMPLES + 8) {
                fprintf(stderr, "driver: too many samples\n");
                return 2;
            }
            for (i = 0; i < m.n_samples; ++i) {
                samples[i] = (int16_t)rd_signed();
            }
            m.samples = samples;
            n = vigil_encode_waveform(&enc, ts, &m, out, cap);
        } else if (op[0] == 'P') {
            vigil_pace_t m;
            m.channel = (uint8_t)rd();
            m.n_pulses = (uint16_t)rd();
            if (m.n_pulses > VIGIL_MAX_PACE_PULSES + 8) {
                fprintf(stderr, "driver: too many pulses\n");
                return 2;
            }
            for (i = 0; i < m.n_pulses; ++i) {
                pulses[i] = (uint32_t)rd();
            }
            m.samples = pulses;
            n = vigil_encode_pace(&enc, ts, &m, out, cap);
        } else if (op[0] == 'S') {
            vigil_status_t m;
            m.flags = (uint16_t)rd();
            m.battery_pct = (uint8_t)rd();
            m.fault_code = (uint16_t)rd();
            n = vigil_encode_status(&enc, ts, &m, out, cap);
        } else if (op[0] == 'A') {
            vigil_ack_t m;
            m.acked_seq = (uint16_t)rd();
            m.acked_type = (uint8_t)rd();
            m.result = (uint8_t)rd();
            m.nonce = (uint32_t)rd();
            n = vigil_encode_ack(&enc, ts, &m, out, cap);
        } else if (op[0] == 'R') {
            uint8_t type = (uint8_t)rd();
            len = rd_hex(data);
            n = vigil_encode_raw(&enc, ts, type, data, len, out, cap);
        } else {
            fprintf(stderr, "driver: unknown op %s\n", op);
            return 2;
        }
        emit(n, cap);
    }
    return 0;
}
