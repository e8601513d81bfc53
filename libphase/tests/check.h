/* The CHECK macro of the C tests: counts passes and failures, prints the
 * failing line with a message. Each test program defines
 * `static int passed, failed;` before including this header. */
#ifndef PHASE_TESTS_CHECK_H
#define PHASE_TESTS_CHECK_H

#include <stdio.h>

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            passed++;                                                      \
        } else {                                                           \
            failed++;                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                    \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
        }                                                                  \
    } while (0)

#endif
