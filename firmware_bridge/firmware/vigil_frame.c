/*
 * vigil_frame.c - Vigil board protocol v1, MCU side. See vigil_frame.h and ../PROTOCOL.md.
 *
 * Theory of operation: a frame is produced by a `frame_writer`, which pushes header and
 * payload bytes through the CRC and through a streaming COBS encoder that writes straight into
 * the caller's buffer; the CRC bytes follow, then the 0x00 delimiter. The COBS encoder matches
 * the reference algorithm (Cheshire & Baker) byte for byte, including its one subtle case: a
 * block of 254 non-zero bytes that ends the input is not followed by an extra code byte.
 * Every store is bounds-checked against `cap`; on overflow the writer keeps counting but stops
 * storing, and the encoder returns 0.
 */
#include "vigil_frame.h"

#include <float.h>
#include <string.h>

/* The wire format stores IEEE-754 binary32; refuse to build where float is something else. */
typedef char vigil_float_is_32_bits[(sizeof(float) == 4u) ? 1 : -1];

#define COBS_BLOCK_FULL 0xFFu

/* ---- CRC ----------------------------------------------------------------------------------- */

uint16_t vigil_crc16_update(uint16_t crc, uint8_t byte)
{
    uint8_t bit;
    crc = (uint16_t)(crc ^ (uint16_t)((uint16_t)byte << 8));
    for (bit = 0; bit < 8u; ++bit) {
        if (crc & 0x8000u) {
            crc = (uint16_t)((uint16_t)(crc << 1) ^ 0x1021u);
        } else {
            crc = (uint16_t)(crc << 1);
        }
    }
    return crc;
}

uint16_t vigil_crc16(const uint8_t *data, size_t len)
{
    uint16_t crc = 0xFFFFu;
    size_t i;
    if (data == NULL) {
        return crc;
    }
    for (i = 0; i < len; ++i) {
        crc = vigil_crc16_update(crc, data[i]);
    }
    return crc;
}

/* ---- streaming COBS writer ------------------------------------------------------------------ */

typedef struct {
    uint8_t *out;
    size_t cap;
    size_t pos;      /* next free index (counts on even after an overflow) */
    size_t code_pos; /* where the current block's code byte goes */
    uint8_t code;    /* 1 + number of data bytes in the current block */
    uint8_t pending; /* previous block was full (0xFF): open a new one only if data follows */
    uint8_t ok;      /* 0 once anything failed to fit */
} cobs_writer;

static void cw_store(cobs_writer *w, size_t idx, uint8_t value)
{
    if (idx < w->cap) {
        w->out[idx] = value;
    } else {
        w->ok = 0;
    }
}

static void cw_open_block(cobs_writer *w)
{
    w->code_pos = w->pos;
    w->pos++;
    w->code = 1;
    if (w->code_pos >= w->cap) {
        w->ok = 0;
    }
}

static void cw_init(cobs_writer *w, uint8_t *out, size_t cap)
{
    w->out = out;
    w->cap = cap;
    w->pos = 0;
    w->pending = 0;
    w->ok = 1;
    cw_open_block(w);
}

static void cw_put(cobs_writer *w, uint8_t byte)
{
    if (w->pending) {
        w->pending = 0;
        cw_open_block(w);
    }
    if (byte == 0u) {
        cw_store(w, w->code_pos, w->code);
        cw_open_block(w);
        return;
    }
    cw_store(w, w->pos, byte);
    w->pos++;
    w->code++;
    if (w->code == COBS_BLOCK_FULL) {
        cw_store(w, w->code_pos, w->code);
        w->pending = 1;
    }
}

/* Close the last block; returns the encoded length or 0 on overflow. */
static size_t cw_finish(cobs_writer *w)
{
    if (!w->pending) {
        cw_store(w, w->code_pos, w->code);
    }
    return w->ok ? w->pos : 0u;
}

size_t vigil_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    cobs_writer w;
    size_t i;
    if ((in == NULL && len > 0u) || out == NULL) {
        return 0u;
    }
    cw_init(&w, out, cap);
    for (i = 0; i < len; ++i) {
        cw_put(&w, in[i]);
    }
    return cw_finish(&w);
}

/* ---- frame writer: header | payload | crc16 LE, through COBS, then 0x00 ----------------------- */

typedef struct {
    cobs_writer cobs;
    uint16_t crc;
} frame_writer;

static void fw_u8(frame_writer *f, uint8_t v)
{
    f->crc = vigil_crc16_update(f->crc, v);
    cw_put(&f->cobs, v);
}

static void fw_u16(frame_writer *f, uint16_t v)
{
    fw_u8(f, (uint8_t)(v & 0xFFu));
    fw_u8(f, (uint8_t)(v >> 8));
}

static void fw_i16(frame_writer *f, int16_t v)
{
    /* Two's complement bit pattern, defined for every value by the conversion rules. */
    fw_u16(f, (uint16_t)v);
}

static void fw_u32(frame_writer *f, uint32_t v)
{
    fw_u8(f, (uint8_t)(v & 0xFFu));
    fw_u8(f, (uint8_t)((v >> 8) & 0xFFu));
    fw_u8(f, (uint8_t)((v >> 16) & 0xFFu));
    fw_u8(f, (uint8_t)(v >> 24));
}

static void fw_f32(frame_writer *f, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    fw_u32(f, bits);
}

static void fw_begin(frame_writer *f, const vigil_encoder_t *enc, uint32_t timestamp_ms,
                     uint8_t type, uint8_t *out, size_t cap)
{
    f->crc = 0xFFFFu;
    cw_init(&f->cobs, out, cap);
    fw_u8(f, (uint8_t)VIGIL_PROTOCOL_VERSION);
    fw_u8(f, type);
    fw_u16(f, enc->next_seq);
    fw_u32(f, timestamp_ms);
}

static size_t fw_end(frame_writer *f, vigil_encoder_t *enc)
{
    uint16_t crc = f->crc;
    size_t len;
    cw_put(&f->cobs, (uint8_t)(crc & 0xFFu));
    cw_put(&f->cobs, (uint8_t)(crc >> 8));
    len = cw_finish(&f->cobs);
    if (len == 0u || len >= f->cobs.cap) {
        return 0u; /* no room for the frame, or for its delimiter */
    }
    f->cobs.out[len] = 0u;
    enc->next_seq = (uint16_t)(enc->next_seq + 1u);
    return len + 1u;
}

/* ---- encoders -------------------------------------------------------------------------------- */

void vigil_encoder_init(vigil_encoder_t *enc)
{
    if (enc != NULL) {
        enc->next_seq = 0;
    }
}

size_t vigil_encode_raw(vigil_encoder_t *enc, uint32_t timestamp_ms, uint8_t type,
                        const uint8_t *payload, size_t payload_len, uint8_t *out, size_t cap)
{
    frame_writer f;
    size_t i;
    if (enc == NULL || out == NULL || (payload == NULL && payload_len > 0u) ||
        payload_len > VIGIL_MAX_PAYLOAD_LEN) {
        return 0u;
    }
    fw_begin(&f, enc, timestamp_ms, type, out, cap);
    for (i = 0; i < payload_len; ++i) {
        fw_u8(&f, payload[i]);
    }
    return fw_end(&f, enc);
}

size_t vigil_encode_hello(vigil_encoder_t *enc, uint32_t timestamp_ms, const vigil_hello_t *m,
                          uint8_t *out, size_t cap)
{
    frame_writer f;
    if (enc == NULL || m == NULL || out == NULL) {
        return 0u;
    }
    fw_begin(&f, enc, timestamp_ms, (uint8_t)VIGIL_TYPE_HELLO, out, cap);
    fw_u8(&f, m->fw_major);
    fw_u8(&f, m->fw_minor);
    fw_u8(&f, m->fw_patch);
    fw_u8(&f, 0u); /* reserved */
    fw_u32(&f, m->board_id);
    fw_u16(&f, (uint16_t)(m->sensors & VIGIL_SENSOR_MASK));
    fw_u16(&f, m->ecg_rate_hz);
    fw_u16(&f, m->ppg_rate_hz);
    fw_u16(&f, m->resp_rate_hz);
    fw_u16(&f, m->vitals_period_ms);
    return fw_end(&f, enc);
}

/* A vital whose validity bit is clear is "not measured" and goes out as 0 (PROTOCOL.md 4). */
static uint16_t valid_or_zero(uint8_t valid, uint8_t bit, uint16_t value)
{
    return (valid & bit) ? value : (uint16_t)0u;
}

size_t vigil_encode_vitals(vigil_encoder_t *enc, uint32_t timestamp_ms, const vigil_vitals_t *m,
                           uint8_t *out, size_t cap)
{
    frame_writer f;
    uint8_t valid;
    if (enc == NULL || m == NULL || out == NULL) {
        return 0u;
    }
    valid = (uint8_t)(m->valid & VIGIL_VALID_MASK);
    fw_begin(&f, enc, timestamp_ms, (uint8_t)VIGIL_TYPE_VITALS, out, cap);
    fw_u8(&f, valid);
    fw_u8(&f, 0u); /* reserved */
    fw_u16(&f, valid_or_zero(valid, VIGIL_VALID_HR, m->hr_dbpm));
    fw_u16(&f, valid_or_zero(valid, VIGIL_VALID_SPO2, m->spo2_dpct));
    fw_u16(&f, valid_or_zero(valid, VIGIL_VALID_RR, m->rr_dbrpm));
    fw_u16(&f, valid_or_zero(valid, VIGIL_VALID_SBP, m->sbp_dmmhg));
    fw_u16(&f, valid_or_zero(valid, VIGIL_VALID_DBP, m->dbp_dmmhg));
    fw_u16(&f, valid_or_zero(valid, VIGIL_VALID_MAP, m->map_dmmhg));
    fw_i16(&f, (valid & VIGIL_VALID_TEMP) ? m->temp_cdegc : (int16_t)0);
    return fw_end(&f, enc);
}

size_t vigil_encode_waveform(vigil_encoder_t *enc, uint32_t timestamp_ms,
                             const vigil_waveform_t *m, uint8_t *out, size_t cap)
{
    frame_writer f;
    uint16_t i;
    if (enc == NULL || m == NULL || out == NULL || m->samples == NULL) {
        return 0u;
    }
    /* Receivers drop these as malformed, so refuse them here where the bug is. */
    if (m->channel < VIGIL_CH_ECG_II || m->channel > VIGIL_CH_ECG_I || m->rate_hz == 0u ||
        m->n_samples == 0u || m->n_samples > VIGIL_MAX_WAVEFORM_SAMPLES ||
        !(m->gain > 0.0f && m->gain <= FLT_MAX)) { /* also rejects NaN and +inf */
        return 0u;
    }
    fw_begin(&f, enc, timestamp_ms, (uint8_t)VIGIL_TYPE_WAVEFORM, out, cap);
    fw_u8(&f, m->channel);
    fw_u8(&f, 0u); /* reserved */
    fw_u16(&f, m->rate_hz);
    fw_f32(&f, m->gain);
    fw_i16(&f, m->baseline);
    fw_u32(&f, m->first_sample);
    fw_u16(&f, m->n_samples);
    for (i = 0; i < m->n_samples; ++i) {
        fw_i16(&f, m->samples[i]);
    }
    return fw_end(&f, enc);
}

size_t vigil_encode_pace(vigil_encoder_t *enc, uint32_t timestamp_ms, const vigil_pace_t *m,
                         uint8_t *out, size_t cap)
{
    frame_writer f;
    uint16_t i;
    if (enc == NULL || m == NULL || out == NULL || m->samples == NULL) {
        return 0u;
    }
    /* Receivers drop these as malformed, so refuse them here where the bug is. */
    if (m->channel < VIGIL_CH_ECG_II || m->channel > VIGIL_CH_ECG_I || m->n_pulses == 0u ||
        m->n_pulses > VIGIL_MAX_PACE_PULSES) {
        return 0u;
    }
    fw_begin(&f, enc, timestamp_ms, (uint8_t)VIGIL_TYPE_PACE, out, cap);
    fw_u8(&f, m->channel);
    fw_u8(&f, 0u); /* reserved */
    fw_u16(&f, m->n_pulses);
    for (i = 0; i < m->n_pulses; ++i) {
        fw_u32(&f, m->samples[i]);
    }
    return fw_end(&f, enc);
}

size_t vigil_encode_status(vigil_encoder_t *enc, uint32_t timestamp_ms, const vigil_status_t *m,
                           uint8_t *out, size_t cap)
{
    frame_writer f;
    if (enc == NULL || m == NULL || out == NULL) {
        return 0u;
    }
    if (m->battery_pct > 100u && m->battery_pct != VIGIL_BATTERY_UNKNOWN) {
        return 0u;
    }
    fw_begin(&f, enc, timestamp_ms, (uint8_t)VIGIL_TYPE_STATUS, out, cap);
    fw_u16(&f, (uint16_t)(m->flags & VIGIL_STATUS_MASK));
    fw_u8(&f, m->battery_pct);
    fw_u8(&f, 0u); /* reserved */
    fw_u16(&f, m->fault_code);
    return fw_end(&f, enc);
}

size_t vigil_encode_ack(vigil_encoder_t *enc, uint32_t timestamp_ms, const vigil_ack_t *m,
                        uint8_t *out, size_t cap)
{
    frame_writer f;
    if (enc == NULL || m == NULL || out == NULL || m->result > VIGIL_ACK_BUSY) {
        return 0u;
    }
    fw_begin(&f, enc, timestamp_ms, (uint8_t)VIGIL_TYPE_ACK, out, cap);
    fw_u16(&f, m->acked_seq);
    fw_u8(&f, m->acked_type);
    fw_u8(&f, m->result);
    fw_u32(&f, m->nonce);
    return fw_end(&f, enc);
}

/* ---- command decoding ------------------------------------------------------------------------- */

static uint16_t rd_u16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] | (uint16_t)((uint16_t)p[1] << 8));
}

static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

vigil_rc_t vigil_decode_command(const uint8_t *chunk, size_t len, vigil_command_t *cmd)
{
    uint8_t body[VIGIL_CMD_MAX_DECODED + 1u]; /* +1: detect "longer than any command" */
    size_t n = 0;  /* decoded bytes */
    size_t i = 0;  /* read index in chunk */
    size_t payload_len;
    const uint8_t *payload;

    if (chunk == NULL || cmd == NULL) {
        return VIGIL_ERR_ARG;
    }
    memset(cmd, 0, sizeof *cmd);
    while (i < len) {
        uint8_t code = chunk[i++];
        uint8_t k;
        if (code == 0u) {
            return VIGIL_ERR_COBS;
        }
        for (k = 1; k < code; ++k) {
            if (i >= len || chunk[i] == 0u) {
                return VIGIL_ERR_COBS;
            }
            if (n < sizeof body) {
                body[n] = chunk[i];
            }
            ++n;
            ++i;
        }
        if (code != COBS_BLOCK_FULL && i < len) {
            if (n < sizeof body) {
                body[n] = 0u;
            }
            ++n;
        }
    }
    if (n < VIGIL_HEADER_LEN + VIGIL_CRC_LEN) {
        return VIGIL_ERR_SHORT;
    }
    if (n > VIGIL_CMD_MAX_DECODED) {
        return VIGIL_ERR_OVERSIZE; /* CRC cannot be checked: nothing to ACK */
    }
    if (vigil_crc16(body, n - VIGIL_CRC_LEN) != rd_u16(body + n - VIGIL_CRC_LEN)) {
        return VIGIL_ERR_CRC;
    }
    if (body[0] != VIGIL_PROTOCOL_VERSION) {
        return VIGIL_ERR_VERSION;
    }
    cmd->type = body[1];
    cmd->seq = rd_u16(body + 2);
    cmd->timestamp_ms = rd_u32(body + 4);
    payload = body + VIGIL_HEADER_LEN;
    payload_len = n - VIGIL_HEADER_LEN - VIGIL_CRC_LEN;
    if (cmd->type == VIGIL_TYPE_PING) {
        if (payload_len != VIGIL_PING_LEN) {
            return VIGIL_ERR_LENGTH;
        }
        cmd->nonce = rd_u32(payload);
        return VIGIL_OK;
    }
    if (cmd->type == VIGIL_TYPE_SET_RATES) {
        if (payload_len != VIGIL_SET_RATES_LEN) {
            return VIGIL_ERR_LENGTH;
        }
        cmd->ecg_rate_hz = rd_u16(payload);
        cmd->ppg_rate_hz = rd_u16(payload + 2);
        cmd->vitals_period_ms = rd_u16(payload + 4);
        return VIGIL_OK;
    }
    return VIGIL_ERR_TYPE;
}

void vigil_receiver_init(vigil_receiver_t *rx)
{
    if (rx != NULL) {
        rx->len = 0;
        rx->synced = 0;
        rx->overflow = 0;
    }
}

vigil_rc_t vigil_receiver_push(vigil_receiver_t *rx, uint8_t byte, vigil_command_t *cmd)
{
    vigil_rc_t rc;
    if (rx == NULL || cmd == NULL) {
        return VIGIL_ERR_ARG;
    }
    if (byte != 0u) {
        if (rx->synced && !rx->overflow) {
            if (rx->len < (uint16_t)VIGIL_RX_CAPACITY) {
                rx->buf[rx->len++] = byte;
            } else {
                rx->overflow = 1;
            }
        }
        return VIGIL_PENDING;
    }
    /* Delimiter: the buffered chunk (if any) is complete. */
    if (!rx->synced) {
        rx->synced = 1;
        rx->len = 0;
        return VIGIL_PENDING;
    }
    if (rx->overflow) {
        rc = VIGIL_ERR_OVERSIZE;
    } else if (rx->len == 0u) {
        rc = VIGIL_PENDING; /* empty frame: ignored */
    } else {
        rc = vigil_decode_command(rx->buf, rx->len, cmd);
    }
    rx->len = 0;
    rx->overflow = 0;
    return rc;
}
