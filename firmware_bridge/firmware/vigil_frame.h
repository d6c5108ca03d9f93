/*
 * vigil_frame.h - Vigil board protocol v1, MCU side (see ../PROTOCOL.md, which is normative).
 *
 * Portable C99 for 8-bit AVR up to ARM/x86: no malloc, no stdio, no global state, no
 * dependence on host endianness (every multi-byte field is written byte by byte, little-endian;
 * floats go through memcpy to uint32_t). The caller owns every buffer.
 *
 * Encoding streams header, payload and CRC straight through COBS into the caller's output
 * buffer, so the only RAM a frame needs is its wire size (VIGIL_FRAME_WIRE_MAX). Every encoder
 * writes the whole frame including the trailing 0x00 delimiter, never writes past `cap`, and
 * returns the number of bytes to send, or 0 if `cap` is too small or an argument is invalid
 * (an encoded frame is never empty, so 0 is unambiguous). The sequence number advances only
 * when a frame was produced.
 *
 * Typical use (Arduino):
 *     static vigil_encoder_t enc;              // vigil_encoder_init(&enc) in setup()
 *     uint8_t buf[VIGIL_VITALS_WIRE_MAX];
 *     size_t n = vigil_encode_vitals(&enc, millis(), &v, buf, sizeof buf);
 *     if (n) Serial.write(buf, n);
 */
#ifndef VIGIL_FRAME_H
#define VIGIL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- protocol constants (PROTOCOL.md sections 1-4) ------------------------------------- */

#define VIGIL_PROTOCOL_VERSION 1u
#define VIGIL_HEADER_LEN 8u
#define VIGIL_CRC_LEN 2u
#define VIGIL_MAX_PAYLOAD_LEN 1024u
#define VIGIL_MAX_DECODED_LEN (VIGIL_HEADER_LEN + VIGIL_MAX_PAYLOAD_LEN + VIGIL_CRC_LEN)
#define VIGIL_MAX_WAVEFORM_SAMPLES 504u
#define VIGIL_MAX_PACE_PULSES 255u /* 4 + 4 * 255 = 1024: a full payload */

/* Frame types. Board -> Pi 0x01..0x0F, Pi -> board 0x10..0x1F. */
#define VIGIL_TYPE_HELLO 0x01u
#define VIGIL_TYPE_VITALS 0x02u
#define VIGIL_TYPE_WAVEFORM 0x03u
#define VIGIL_TYPE_STATUS 0x04u
#define VIGIL_TYPE_ACK 0x05u
#define VIGIL_TYPE_PACE 0x06u
#define VIGIL_TYPE_PING 0x10u
#define VIGIL_TYPE_SET_RATES 0x11u

/* Payload lengths of the fixed-size frames, bytes. */
#define VIGIL_HELLO_LEN 18u
#define VIGIL_VITALS_LEN 16u
#define VIGIL_WAVEFORM_HEAD_LEN 16u
#define VIGIL_PACE_HEAD_LEN 4u
#define VIGIL_STATUS_LEN 6u
#define VIGIL_ACK_LEN 8u
#define VIGIL_PING_LEN 4u
#define VIGIL_SET_RATES_LEN 6u

/* Worst-case COBS size of n >= 1 input bytes: one code byte per started block of 254. */
#define VIGIL_COBS_MAX(n) ((n) + ((n) + 253u) / 254u)
/* Worst-case bytes on the wire for a payload of p bytes, including the 0x00 delimiter. */
#define VIGIL_FRAME_WIRE_MAX(p) (VIGIL_COBS_MAX(VIGIL_HEADER_LEN + (p) + VIGIL_CRC_LEN) + 1u)

#define VIGIL_MAX_WIRE_LEN VIGIL_FRAME_WIRE_MAX(VIGIL_MAX_PAYLOAD_LEN) /* 1040 */
#define VIGIL_HELLO_WIRE_MAX VIGIL_FRAME_WIRE_MAX(VIGIL_HELLO_LEN)
#define VIGIL_VITALS_WIRE_MAX VIGIL_FRAME_WIRE_MAX(VIGIL_VITALS_LEN)
#define VIGIL_STATUS_WIRE_MAX VIGIL_FRAME_WIRE_MAX(VIGIL_STATUS_LEN)
#define VIGIL_ACK_WIRE_MAX VIGIL_FRAME_WIRE_MAX(VIGIL_ACK_LEN)
#define VIGIL_WAVEFORM_WIRE_MAX(n) VIGIL_FRAME_WIRE_MAX(VIGIL_WAVEFORM_HEAD_LEN + 2u * (n))
#define VIGIL_PACE_WIRE_MAX(n) VIGIL_FRAME_WIRE_MAX(VIGIL_PACE_HEAD_LEN + 4u * (n))

/* HELLO sensor set bits. */
#define VIGIL_SENSOR_ECG 0x0001u
#define VIGIL_SENSOR_PPG 0x0002u
#define VIGIL_SENSOR_SPO2 0x0004u
#define VIGIL_SENSOR_RESP 0x0008u
#define VIGIL_SENSOR_NIBP 0x0010u
#define VIGIL_SENSOR_ABP 0x0020u
#define VIGIL_SENSOR_TEMP 0x0040u
#define VIGIL_SENSOR_PACE 0x0080u /* the board detects pacemaker pulses, sends PACE frames */
#define VIGIL_SENSOR_MASK 0x00FFu /* other bits are reserved and sent as 0 */

/* VITALS validity bits: a value whose bit is clear is sent as 0, whatever the struct holds. */
#define VIGIL_VALID_HR 0x01u
#define VIGIL_VALID_SPO2 0x02u
#define VIGIL_VALID_RR 0x04u
#define VIGIL_VALID_SBP 0x08u
#define VIGIL_VALID_DBP 0x10u
#define VIGIL_VALID_MAP 0x20u
#define VIGIL_VALID_TEMP 0x40u
#define VIGIL_VALID_MASK 0x7Fu

/* WAVEFORM channels (physical unit). */
#define VIGIL_CH_ECG_II 1u /* mV */
#define VIGIL_CH_PPG 2u    /* arbitrary units */
#define VIGIL_CH_RESP 3u   /* arbitrary units, impedance */
#define VIGIL_CH_ABP 4u    /* mmHg */
#define VIGIL_CH_ECG_V 5u  /* mV */
#define VIGIL_CH_ECG_I 6u  /* mV */

/* STATUS flags. */
#define VIGIL_STATUS_LEAD_OFF 0x0001u
#define VIGIL_STATUS_PROBE_OFF 0x0002u
#define VIGIL_STATUS_SENSOR_FAULT 0x0004u
#define VIGIL_STATUS_BATTERY_LOW 0x0008u
#define VIGIL_STATUS_ON_BATTERY 0x0010u
#define VIGIL_STATUS_NIBP_FAULT 0x0020u
#define VIGIL_STATUS_TEMP_PROBE_OFF 0x0040u
#define VIGIL_STATUS_MASK 0x007Fu /* other bits are reserved and sent as 0 */
#define VIGIL_BATTERY_UNKNOWN 255u

/* ACK results. */
#define VIGIL_ACK_OK 0u
#define VIGIL_ACK_UNSUPPORTED 1u
#define VIGIL_ACK_BAD_ARGUMENT 2u
#define VIGIL_ACK_BUSY 3u

/* ---- frame contents (wire units: integers exactly as they travel) ---------------------- */

typedef struct {
    uint8_t fw_major, fw_minor, fw_patch;
    uint32_t board_id;
    uint16_t sensors;          /* VIGIL_SENSOR_* bits */
    uint16_t ecg_rate_hz;      /* 0 = none */
    uint16_t ppg_rate_hz;      /* 0 = none */
    uint16_t resp_rate_hz;     /* 0 = none */
    uint16_t vitals_period_ms; /* normally 1000 */
} vigil_hello_t;

typedef struct {
    uint8_t valid;           /* VIGIL_VALID_* bits */
    uint16_t hr_dbpm;        /* heart rate, 0.1 bpm */
    uint16_t spo2_dpct;      /* SpO2, 0.1 % */
    uint16_t rr_dbrpm;       /* respiration rate, 0.1 breaths/min */
    uint16_t sbp_dmmhg;      /* systolic BP, 0.1 mmHg */
    uint16_t dbp_dmmhg;      /* diastolic BP, 0.1 mmHg */
    uint16_t map_dmmhg;      /* mean arterial pressure, 0.1 mmHg */
    int16_t temp_cdegc;      /* temperature, 0.01 degC */
} vigil_vitals_t;

typedef struct {
    uint8_t channel;         /* VIGIL_CH_*, 1..6 */
    uint16_t rate_hz;        /* > 0 */
    float gain;              /* counts per physical unit, finite and > 0 */
    int16_t baseline;        /* the count that means 0 physical units */
    uint32_t first_sample;   /* index of samples[0] in this channel's counter (wraps) */
    uint16_t n_samples;      /* 1..VIGIL_MAX_WAVEFORM_SAMPLES */
    const int16_t *samples;  /* n_samples raw counts */
} vigil_waveform_t;

/* Pacemaker pulses detected in one chunk of an ECG channel. Send it after the WAVEFORM
 * frame(s) holding those samples, only when there was at least one pulse, and only if HELLO
 * advertised VIGIL_SENSOR_PACE; more than VIGIL_MAX_PACE_PULSES pulses go out as several. */
typedef struct {
    uint8_t channel;         /* the ECG channel whose sample counter the indices count in */
    uint16_t n_pulses;       /* 1..VIGIL_MAX_PACE_PULSES */
    const uint32_t *samples; /* n_pulses sample indices, increasing (same counter as
                                vigil_waveform_t.first_sample, wraps) */
} vigil_pace_t;

typedef struct {
    uint16_t flags;          /* VIGIL_STATUS_* bits */
    uint8_t battery_pct;     /* 0..100, or VIGIL_BATTERY_UNKNOWN */
    uint16_t fault_code;     /* 0 = none, board-specific otherwise */
} vigil_status_t;

typedef struct {
    uint16_t acked_seq;      /* seq of the command acknowledged */
    uint8_t acked_type;      /* type of the command acknowledged */
    uint8_t result;          /* VIGIL_ACK_* */
    uint32_t nonce;          /* echoed from PING, 0 for other commands */
} vigil_ack_t;

/* Encoder context: one per direction (the board has one). Holds the next sequence number;
 * vigil_encoder_init() sets it to 0 so the boot HELLO goes out with seq 0 as required. */
typedef struct {
    uint16_t next_seq;
} vigil_encoder_t;

/* ---- primitives -------------------------------------------------------------------------- */

/* CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout). */
uint16_t vigil_crc16_update(uint16_t crc, uint8_t byte);
uint16_t vigil_crc16(const uint8_t *data, size_t len);

/* COBS-encode `len` bytes into `out` (no delimiter is appended). Returns the encoded length,
 * or 0 if `cap` is too small. `in` and `out` must not overlap. */
size_t vigil_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/* ---- board -> Pi encoders ---------------------------------------------------------------- */

void vigil_encoder_init(vigil_encoder_t *enc);

/* Any frame from a raw payload (the typed encoders below are preferred). */
size_t vigil_encode_raw(vigil_encoder_t *enc, uint32_t timestamp_ms, uint8_t type,
                        const uint8_t *payload, size_t payload_len, uint8_t *out, size_t cap);

size_t vigil_encode_hello(vigil_encoder_t *enc, uint32_t timestamp_ms, const vigil_hello_t *m,
                          uint8_t *out, size_t cap);
size_t vigil_encode_vitals(vigil_encoder_t *enc, uint32_t timestamp_ms, const vigil_vitals_t *m,
                           uint8_t *out, size_t cap);
size_t vigil_encode_waveform(vigil_encoder_t *enc, uint32_t timestamp_ms,
                             const vigil_waveform_t *m, uint8_t *out, size_t cap);
size_t vigil_encode_pace(vigil_encoder_t *enc, uint32_t timestamp_ms, const vigil_pace_t *m,
                         uint8_t *out, size_t cap);
size_t vigil_encode_status(vigil_encoder_t *enc, uint32_t timestamp_ms, const vigil_status_t *m,
                           uint8_t *out, size_t cap);
size_t vigil_encode_ack(vigil_encoder_t *enc, uint32_t timestamp_ms, const vigil_ack_t *m,
                        uint8_t *out, size_t cap);

/* ---- Pi -> board commands ---------------------------------------------------------------- */

typedef enum {
    VIGIL_OK = 0,
    VIGIL_PENDING = 1,        /* receiver: no complete frame yet */
    VIGIL_ERR_ARG = -1,       /* NULL pointer */
    VIGIL_ERR_OVERSIZE = -2,  /* frame longer than the receive buffer: dropped */
    VIGIL_ERR_COBS = -3,      /* not valid COBS */
    VIGIL_ERR_SHORT = -4,     /* shorter than header + CRC */
    VIGIL_ERR_CRC = -5,
    VIGIL_ERR_VERSION = -6,   /* protocol version other than 1 */
    VIGIL_ERR_TYPE = -7,      /* CRC good but not a known command: `cmd` header is filled in so
                                 the board can ACK it as VIGIL_ACK_UNSUPPORTED */
    VIGIL_ERR_LENGTH = -8     /* known command with the wrong payload length */
} vigil_rc_t;

typedef struct {
    uint8_t type;             /* VIGIL_TYPE_PING or VIGIL_TYPE_SET_RATES */
    uint16_t seq;
    uint32_t timestamp_ms;
    uint32_t nonce;           /* PING */
    uint16_t ecg_rate_hz;     /* SET_RATES, 0 = unchanged */
    uint16_t ppg_rate_hz;     /* SET_RATES, 0 = unchanged */
    uint16_t vitals_period_ms;/* SET_RATES, 0 = unchanged */
} vigil_command_t;

/* Longest command on the wire without its delimiter (SET_RATES: 16 decoded bytes). */
#define VIGIL_CMD_MAX_DECODED (VIGIL_HEADER_LEN + VIGIL_SET_RATES_LEN + VIGIL_CRC_LEN)
#ifndef VIGIL_RX_CAPACITY
#define VIGIL_RX_CAPACITY 32u /* encoded bytes buffered per frame; longer frames are dropped */
#endif

/* Decode one COBS chunk (the bytes between two 0x00, without them) holding a command. */
vigil_rc_t vigil_decode_command(const uint8_t *chunk, size_t len, vigil_command_t *cmd);

/* Byte-at-a-time receiver for a serial RX loop: push every received byte; returns VIGIL_OK
 * when `cmd` holds a new command, VIGIL_PENDING while a frame is incomplete (or on empty
 * frames), or a negative code when a completed frame was bad. Bytes before the first 0x00
 * after init are discarded (joining mid-stream). */
typedef struct {
    uint8_t buf[VIGIL_RX_CAPACITY];
    uint16_t len;
    uint8_t synced;
    uint8_t overflow;
} vigil_receiver_t;

void vigil_receiver_init(vigil_receiver_t *rx);
vigil_rc_t vigil_receiver_push(vigil_receiver_t *rx, uint8_t byte, vigil_command_t *cmd);

#ifdef __cplusplus
}
#endif

#endif /* VIGIL_FRAME_H */
