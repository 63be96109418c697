/*
 * Prints a fixed set of upfw sentences: every message type, the examples of
 * PROTOCOL.md, and edge values. firmware_bridge's tests compile this with gcc and
 * check that the Python decoder reads exactly these messages.
 *
 *   gcc -std=c99 -Wall -Wextra -pedantic -Isrc extras/host_demo.c src/upfw.c -o upfw_demo
 */
#include <stdio.h>

#include "upfw.h"

static int failures = 0;

static void emit(size_t len, const char *line) {
    if (len == 0u) {
        failures++;
        return;
    }
    fputs(line, stdout);
}

int main(void) {
    char s[UPFW_BUFFER_SIZE];

    emit(upfw_hello(s, sizeof s, 0, 1532, "LOOP", "lp-hn-017", "1.0.0", 2), s);
    emit(upfw_loop_vehicle(s, sizeof s, 42, 81234, 1, 780, 1523, 301, 46), s);
    emit(upfw_loop_vehicle(s, sizeof s, 43, 81502, 2, 1210, 977, UPFW_ABSENT, UPFW_ABSENT), s);
    emit(upfw_loop_interval(s, sizeof s, 44, 90000, 1, 60, 18, 125, 287), s);
    emit(upfw_bed_weight(s, sizeof s, 7, 120500, 3, 68250, 1, 1), s);
    emit(upfw_door_count(s, sizeof s, 8, 60000, 1, 152, 149), s);
    emit(upfw_ticket_issued(s, sizeof s, 12, 305000, "A", 1042, 17), s);
    emit(upfw_ticket_served(s, sizeof s, 13, 306000, "A", 1025, 4, 1380), s);
    emit(upfw_status(s, sizeof s, 9, 61000, "LOOP_OPEN", 2, ""), s);
    emit(upfw_identity_query(s, sizeof s), s);

    /* edge values */
    emit(upfw_hello(s, sizeof s, 65535, 4294967295UL, "KIOSK", "kiosk-bvbm-0001x", "2.10.3-rc1", 255), s);
    emit(upfw_bed_weight(s, sizeof s, 1, 0, 1, -350, 0, 0), s);
    emit(upfw_bed_weight(s, sizeof s, 2, 1, 255, -2147483647L - 1L, 0, 0), s);
    emit(upfw_door_count(s, sizeof s, 3, 2, 4, 4294967295UL, 0), s);
    emit(upfw_loop_interval(s, sizeof s, 4, 3, 8, 300, 0, 1000, UPFW_ABSENT), s);
    emit(upfw_status(s, sizeof s, 5, 4, "REBOOT", UPFW_ABSENT, "wdt"), s);
    emit(upfw_loop_vehicle(s, sizeof s, 6, 5, 1, 0, 0, 0, 0), s);

    /* what must be refused */
    if (upfw_hello(s, sizeof s, 0, 0, "LOOP", "bad id", "1", 1) != 0) failures++;
    if (upfw_hello(s, sizeof s, 0, 0, "LOOP", "x", "1", 0) != 0) failures++;
    if (upfw_ticket_issued(s, sizeof s, 0, 0, "TOOLONGQ9", 1, 1) != 0) failures++;
    if (upfw_loop_interval(s, sizeof s, 0, 0, 1, 60, 1, 1001, UPFW_ABSENT) != 0) failures++;
    if (upfw_door_count(s, 20, 0, 0, 1, 1, 1) != 0) failures++;
    if (!upfw_is_identity_query("$PUPIQ,1*50\r\n", 13)) failures++;
    if (upfw_is_identity_query("$PUPIQ,1*51\r\n", 13)) failures++;

    if (failures != 0) {
        fprintf(stderr, "upfw host demo: %d failures\n", failures);
        return 1;
    }
    return 0;
}
