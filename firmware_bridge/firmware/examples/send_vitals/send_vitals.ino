// send_vitals.ino - the smallest Vigil board: boot 0x00, HELLO, then VITALS at 1 Hz over
// Serial, and an ACK for every command from the Pi (PROTOCOL.md is normative).
//
// Build: copy (or symlink) ../../vigil_frame.h and ../../vigil_frame.c next to this file, so
// the Arduino IDE / arduino-cli compiles them with the sketch. Needs ~100 bytes of RAM.

#include "vigil_frame.h"

static const uint32_t BOARD_ID = 0x00000001UL;     // unique per board, e.g. from EEPROM
static const uint16_t DEFAULT_VITALS_PERIOD_MS = 1000;
static const uint16_t MIN_VITALS_PERIOD_MS = 100;  // SET_RATES below this is refused

static vigil_encoder_t enc;
static vigil_receiver_t rx;
static uint8_t tx[VIGIL_HELLO_WIRE_MAX];  // HELLO is the largest frame this sketch sends
static uint16_t vitals_period_ms = DEFAULT_VITALS_PERIOD_MS;
static uint32_t last_vitals_ms;

// ---- placeholder sensor reads: replace with the real drivers ------------------------------
// Each returns false when the value is not measured (probe off, no cuff reading, artefact).
static bool read_hr_dbpm(uint16_t *v) { *v = 720; return true; }         // 72.0 bpm
static bool read_spo2_dpct(uint16_t *v) { *v = 980; return true; }       // 98.0 %
static bool read_rr_dbrpm(uint16_t *v) { *v = 160; return true; }        // 16.0 /min
static bool read_temp_cdegc(int16_t *v) { *v = 3690; return true; }      // 36.90 degC
static bool read_nibp_dmmhg(uint16_t *sbp, uint16_t *dbp, uint16_t *map) {
  (void)sbp; (void)dbp; (void)map;
  return false;  // no cuff reading yet
}

static void send(size_t n) {
  if (n > 0) {
    Serial.write(tx, n);
  }
}

static void send_vitals(uint32_t now_ms) {
  vigil_vitals_t v = {};
  if (read_hr_dbpm(&v.hr_dbpm)) v.valid |= VIGIL_VALID_HR;
  if (read_spo2_dpct(&v.spo2_dpct)) v.valid |= VIGIL_VALID_SPO2;
  if (read_rr_dbrpm(&v.rr_dbrpm)) v.valid |= VIGIL_VALID_RR;
  if (read_temp_cdegc(&v.temp_cdegc)) v.valid |= VIGIL_VALID_TEMP;
  if (read_nibp_dmmhg(&v.sbp_dmmhg, &v.dbp_dmmhg, &v.map_dmmhg)) {
    v.valid |= VIGIL_VALID_SBP | VIGIL_VALID_DBP | VIGIL_VALID_MAP;
  }
  send(vigil_encode_vitals(&enc, now_ms, &v, tx, sizeof tx));
}

static void answer(vigil_rc_t rc, const vigil_command_t *cmd) {
  vigil_ack_t ack = {};
  ack.acked_seq = cmd->seq;
  ack.acked_type = cmd->type;
  ack.result = VIGIL_ACK_OK;
  if (rc == VIGIL_ERR_TYPE) {
    ack.result = VIGIL_ACK_UNSUPPORTED;
  } else if (cmd->type == VIGIL_TYPE_PING) {
    ack.nonce = cmd->nonce;
  } else if (cmd->type == VIGIL_TYPE_SET_RATES) {
    if (cmd->ecg_rate_hz != 0 || cmd->ppg_rate_hz != 0) {
      ack.result = VIGIL_ACK_UNSUPPORTED;  // this board streams no waveforms
    } else if (cmd->vitals_period_ms != 0 && cmd->vitals_period_ms < MIN_VITALS_PERIOD_MS) {
      ack.result = VIGIL_ACK_BAD_ARGUMENT;
    } else if (cmd->vitals_period_ms != 0) {
      vitals_period_ms = cmd->vitals_period_ms;
    }
  }
  send(vigil_encode_ack(&enc, millis(), &ack, tx, sizeof tx));
}

void setup() {
  Serial.begin(115200);
  vigil_encoder_init(&enc);  // boot HELLO goes out with seq 0
  vigil_receiver_init(&rx);
  Serial.write((uint8_t)0);  // close whatever partial frame the Pi holds

  vigil_hello_t hello = {};
  hello.fw_major = 1;
  hello.fw_minor = 0;
  hello.fw_patch = 0;
  hello.board_id = BOARD_ID;
  hello.sensors = VIGIL_SENSOR_SPO2 | VIGIL_SENSOR_RESP | VIGIL_SENSOR_TEMP;
  hello.vitals_period_ms = vitals_period_ms;
  last_vitals_ms = millis();
  send(vigil_encode_hello(&enc, last_vitals_ms, &hello, tx, sizeof tx));
}

void loop() {
  uint32_t now = millis();
  if (now - last_vitals_ms >= vitals_period_ms) {  // unsigned difference: wraps correctly
    last_vitals_ms += vitals_period_ms;
    if (now - last_vitals_ms >= vitals_period_ms) {
      last_vitals_ms = now;  // fell behind by more than a period: do not burst to catch up
    }
    send_vitals(now);
  }
  while (Serial.available() > 0) {
    vigil_command_t cmd;
    vigil_rc_t rc = vigil_receiver_push(&rx, (uint8_t)Serial.read(), &cmd);
    if (rc == VIGIL_OK || rc == VIGIL_ERR_TYPE) {
      answer(rc, &cmd);
    }
  }
}
