/*
 * upfw: reference encoder of the urbanpulse board protocol, version 1
 * (firmware_bridge/PROTOCOL.md). Portable C99: no malloc, no printf, no floats;
 * fits an AVR Arduino as well as an ESP32 or a desktop.
 *
 * Each function writes one complete sentence, "$PUP..*HH\r\n" plus a terminating
 * NUL, into `out` (`cap` bytes; UPFW_BUFFER_SIZE always suffices) and returns its
 * length without the NUL, or 0 (and an empty string) if an argument is invalid
 * (text with characters outside [A-Za-z0-9._-] or too long) or the buffer is too small.
 */
#ifndef UPFW_H
#define UPFW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UPFW_VERSION 1
#define UPFW_MAX_SENTENCE 82            /* from '$' to LF inclusive */
#define UPFW_BUFFER_SIZE (UPFW_MAX_SENTENCE + 1)
#define UPFW_ABSENT (-1L)               /* an optional field left empty */

/* kind: "LOOP", "BED", "DOOR" or "KIOSK" */
size_t upfw_hello(char *out, size_t cap, uint16_t seq, uint32_t t_ms, const char *kind,
                  const char *device_id, const char *firmware, uint8_t channels);

/* speed in 0.1 km/h and length in dm, or UPFW_ABSENT */
size_t upfw_loop_vehicle(char *out, size_t cap, uint16_t seq, uint32_t t_ms, uint8_t channel,
                         uint32_t on_ms, uint32_t count, int32_t speed_dkmh, int32_t length_dm);

/* occupancy in per mille (0..1000); mean speed in 0.1 km/h or UPFW_ABSENT */
size_t upfw_loop_interval(char *out, size_t cap, uint16_t seq, uint32_t t_ms, uint8_t channel,
                          uint32_t interval_s, uint32_t count, uint16_t occupancy_permille,
                          int32_t mean_speed_dkmh);

/* weight in grams (signed); stable and occupied are 0 or 1 */
size_t upfw_bed_weight(char *out, size_t cap, uint16_t seq, uint32_t t_ms, uint8_t bed,
                       int32_t weight_g, uint8_t stable, uint8_t occupied);

size_t upfw_door_count(char *out, size_t cap, uint16_t seq, uint32_t t_ms, uint8_t door,
                       uint32_t entered, uint32_t exited);

size_t upfw_ticket_issued(char *out, size_t cap, uint16_t seq, uint32_t t_ms, const char *queue,
                          uint32_t ticket, uint32_t waiting);

size_t upfw_ticket_served(char *out, size_t cap, uint16_t seq, uint32_t t_ms, const char *queue,
                          uint32_t ticket, uint32_t counter, uint32_t wait_s);

/* code: "OK", "LOOP_OPEN", ...; channel 1..255 or UPFW_ABSENT; detail may be "" */
size_t upfw_status(char *out, size_t cap, uint16_t seq, uint32_t t_ms, const char *code,
                   int32_t channel, const char *detail);

/* host to board */
size_t upfw_identity_query(char *out, size_t cap);

/* 1 if `line` (len bytes, with or without CR LF) is a valid "$PUPIQ,1*HH" sentence. */
int upfw_is_identity_query(const char *line, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* UPFW_H */
