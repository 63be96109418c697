/*
 * upfw example: an inductive-loop detector card with an opto/relay presence output
 * wired to PRESENCE_PIN (active low: the card pulls it to GND while a vehicle is over
 * the loop). The board reports each vehicle (LV), a summary every minute (LI), says
 * HI at boot, every minute and when the edge node asks (IQ).
 *
 * Copy firmware/upfw into your Arduino libraries folder, open this example, upload.
 */
#include <Arduino.h>
#include <upfw.h>

static const uint8_t PRESENCE_PIN = 2;
static const uint8_t CHANNEL = 1;
static const uint32_t DEBOUNCE_MS = 20;      /* relay contacts bounce for a few ms */
static const uint32_t INTERVAL_MS = 60000UL;

static char line[UPFW_BUFFER_SIZE];
static char rx[UPFW_BUFFER_SIZE];
static size_t rx_len = 0;
static uint16_t seq = 0;

static bool present = false;
static uint32_t edge_ms = 0;            /* last accepted change */
static uint32_t on_since_ms = 0;
static uint32_t total_count = 0;
static uint32_t interval_count = 0;
static uint32_t interval_on_ms = 0;
static uint32_t interval_start_ms = 0;
static uint32_t last_hello_ms = 0;

static void send(size_t len) {
    if (len > 0) {
        Serial.write(line, len);
        seq++;
    }
}

static void hello(uint32_t now) {
    send(upfw_hello(line, sizeof line, seq, now, "LOOP", "lp-demo-01", "1.0.0", 1));
    last_hello_ms = now;
}

void setup() {
    pinMode(PRESENCE_PIN, INPUT_PULLUP);
    Serial.begin(115200);
    uint32_t now = millis();
    interval_start_ms = now;
    hello(now);
}

static void watch_loop(uint32_t now) {
    bool level = digitalRead(PRESENCE_PIN) == LOW;
    if (level == present || now - edge_ms < DEBOUNCE_MS) {
        return;
    }
    edge_ms = now;
    present = level;
    if (present) {
        on_since_ms = now;
        return;
    }
    uint32_t on_ms = now - on_since_ms;
    total_count++;
    interval_count++;
    interval_on_ms += on_ms;
    send(upfw_loop_vehicle(line, sizeof line, seq, now, CHANNEL, on_ms, total_count,
                           UPFW_ABSENT, UPFW_ABSENT));
}

static void close_interval(uint32_t now) {
    if (now - interval_start_ms < INTERVAL_MS) {
        return;
    }
    uint32_t span = now - interval_start_ms;
    uint32_t permille = (uint32_t)((uint64_t)interval_on_ms * 1000u / span);
    send(upfw_loop_interval(line, sizeof line, seq, now, CHANNEL, span / 1000u, interval_count,
                            (uint16_t)(permille > 1000u ? 1000u : permille), UPFW_ABSENT));
    interval_start_ms = now;
    interval_count = 0;
    interval_on_ms = 0;
}

static void listen(uint32_t now) {
    while (Serial.available() > 0) {
        char c = (char)Serial.read();
        if (c == '$') {
            rx_len = 0;
        }
        if (rx_len < sizeof rx) {
            rx[rx_len++] = c;
        }
        if (c == '\n') {
            if (upfw_is_identity_query(rx, rx_len)) {
                hello(now);
            }
            rx_len = 0;
        }
    }
}

void loop() {
    uint32_t now = millis();
    watch_loop(now);
    close_interval(now);
    listen(now);
    if (now - last_hello_ms >= INTERVAL_MS) {
        hello(now);
    }
}
