/* upfw reference encoder: see upfw.h and firmware_bridge/PROTOCOL.md. */
#include "upfw.h"

typedef struct {
    char *out;
    size_t cap;
    size_t len;
    int ok;
} builder;

static const char HEX[] = "0123456789ABCDEF";

static void put_char(builder *b, char c) {
    if (b->len + 1 < b->cap) {
        b->out[b->len++] = c;
    } else {
        b->ok = 0;
    }
}

static int text_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

static void put_text(builder *b, const char *s, size_t min_len, size_t max_len) {
    size_t n = 0;
    if (s == NULL) {
        b->ok = 0;
        return;
    }
    for (; s[n] != '\0'; n++) {
        if (!text_char(s[n]) || n >= max_len) {
            b->ok = 0;
            return;
        }
        put_char(b, s[n]);
    }
    if (n < min_len) {
        b->ok = 0;
    }
}

static void put_u32(builder *b, uint32_t v) {
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + (v % 10u));
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        put_char(b, digits[--n]);
    }
}

static void put_i32(builder *b, int32_t v) {
    if (v < 0) {
        put_char(b, '-');
        put_u32(b, (uint32_t)(-(v + 1)) + 1u); /* no overflow at INT32_MIN */
    } else {
        put_u32(b, (uint32_t)v);
    }
}

static void sep(builder *b) { put_char(b, ','); }

static void field_u32(builder *b, uint32_t v) {
    sep(b);
    put_u32(b, v);
}

static void field_optional(builder *b, int32_t v) {
    sep(b);
    if (v != UPFW_ABSENT) {
        if (v < 0) {
            b->ok = 0;
        } else {
            put_u32(b, (uint32_t)v);
        }
    }
}

static void field_channel(builder *b, uint8_t channel) {
    if (channel == 0u) {
        b->ok = 0;
    }
    field_u32(b, channel);
}

static void begin(builder *b, char *out, size_t cap, const char *type) {
    b->out = out;
    b->cap = cap;
    b->len = 0;
    b->ok = (out != NULL && cap > 0u);
    put_char(b, '$');
    put_char(b, 'P');
    put_char(b, 'U');
    put_char(b, 'P');
    put_char(b, type[0]);
    put_char(b, type[1]);
    field_u32(b, UPFW_VERSION);
}

static void begin_board(builder *b, char *out, size_t cap, const char *type, uint16_t seq,
                        uint32_t t_ms) {
    begin(b, out, cap, type);
    field_u32(b, seq);
    field_u32(b, t_ms);
}

static size_t finish(builder *b) {
    uint8_t sum = 0;
    size_t i;
    for (i = 1; i < b->len; i++) {
        sum ^= (uint8_t)b->out[i];
    }
    put_char(b, '*');
    put_char(b, HEX[sum >> 4]);
    put_char(b, HEX[sum & 0x0Fu]);
    put_char(b, '\r');
    put_char(b, '\n');
    if (!b->ok || b->len > UPFW_MAX_SENTENCE) {
        if (b->out != NULL && b->cap > 0u) {
            b->out[0] = '\0';
        }
        return 0;
    }
    b->out[b->len] = '\0';
    return b->len;
}

size_t upfw_hello(char *out, size_t cap, uint16_t seq, uint32_t t_ms, const char *kind,
                  const char *device_id, const char *firmware, uint8_t channels) {
    builder b;
    begin_board(&b, out, cap, "HI", seq, t_ms);
    sep(&b);
    put_text(&b, kind, 3, 5);
    sep(&b);
    put_text(&b, device_id, 1, 16);
    sep(&b);
    put_text(&b, firmware, 1, 16);
    field_channel(&b, channels);
    return finish(&b);
}

size_t upfw_loop_vehicle(char *out, size_t cap, uint16_t seq, uint32_t t_ms, uint8_t channel,
                         uint32_t on_ms, uint32_t count, int32_t speed_dkmh, int32_t length_dm) {
    builder b;
    begin_board(&b, out, cap, "LV", seq, t_ms);
    field_channel(&b, channel);
    field_u32(&b, on_ms);
    field_u32(&b, count);
    field_optional(&b, speed_dkmh);
    field_optional(&b, length_dm);
    return finish(&b);
}

size_t upfw_loop_interval(char *out, size_t cap, uint16_t seq, uint32_t t_ms, uint8_t channel,
                          uint32_t interval_s, uint32_t count, uint16_t occupancy_permille,
                          int32_t mean_speed_dkmh) {
    builder b;
    begin_board(&b, out, cap, "LI", seq, t_ms);
    field_channel(&b, channel);
    field_u32(&b, interval_s);
    field_u32(&b, count);
    if (occupancy_permille > 1000u) {
        b.ok = 0;
    }
    field_u32(&b, occupancy_permille);
    field_optional(&b, mean_speed_dkmh);
    return finish(&b);
}

size_t upfw_bed_weight(char *out, size_t cap, uint16_t seq, uint32_t t_ms, uint8_t bed,
                       int32_t weight_g, uint8_t stable, uint8_t occupied) {
    builder b;
    begin_board(&b, out, cap, "BW", seq, t_ms);
    field_channel(&b, bed);
    sep(&b);
    put_i32(&b, weight_g);
    field_u32(&b, stable ? 1u : 0u);
    field_u32(&b, occupied ? 1u : 0u);
    return finish(&b);
}

size_t upfw_door_count(char *out, size_t cap, uint16_t seq, uint32_t t_ms, uint8_t door,
                       uint32_t entered, uint32_t exited) {
    builder b;
    begin_board(&b, out, cap, "DC", seq, t_ms);
    field_channel(&b, door);
    field_u32(&b, entered);
    field_u32(&b, exited);
    return finish(&b);
}

size_t upfw_ticket_issued(char *out, size_t cap, uint16_t seq, uint32_t t_ms, const char *queue,
                          uint32_t ticket, uint32_t waiting) {
    builder b;
    begin_board(&b, out, cap, "QT", seq, t_ms);
    sep(&b);
    put_text(&b, queue, 1, 8);
    field_u32(&b, ticket);
    field_u32(&b, waiting);
    return finish(&b);
}

size_t upfw_ticket_served(char *out, size_t cap, uint16_t seq, uint32_t t_ms, const char *queue,
                          uint32_t ticket, uint32_t counter, uint32_t wait_s) {
    builder b;
    begin_board(&b, out, cap, "QS", seq, t_ms);
    sep(&b);
    put_text(&b, queue, 1, 8);
    field_u32(&b, ticket);
    field_u32(&b, counter);
    field_u32(&b, wait_s);
    return finish(&b);
}

size_t upfw_status(char *out, size_t cap, uint16_t seq, uint32_t t_ms, const char *code,
                   int32_t channel, const char *detail) {
    builder b;
    begin_board(&b, out, cap, "ST", seq, t_ms);
    sep(&b);
    put_text(&b, code, 2, 16);
    if (channel != UPFW_ABSENT && (channel < 1 || channel > 255)) {
        b.ok = 0;
    }
    field_optional(&b, channel);
    sep(&b);
    put_text(&b, detail, 0, 16);
    return finish(&b);
}

size_t upfw_identity_query(char *out, size_t cap) {
    builder b;
    begin(&b, out, cap, "IQ");
    return finish(&b);
}

int upfw_is_identity_query(const char *line, size_t len) {
    static const char body[] = "PUPIQ,1";
    uint8_t sum = 0;
    size_t i;
    while (len > 0u && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
        len--;
    }
    if (len != sizeof body - 1u + 4u || line[0] != '$' || line[len - 3] != '*') {
        return 0;
    }
    for (i = 0; i < sizeof body - 1u; i++) {
        if (line[1 + i] != body[i]) {
            return 0;
        }
        sum ^= (uint8_t)body[i];
    }
    return line[len - 2] == HEX[sum >> 4] && line[len - 1] == HEX[sum & 0x0Fu];
}
