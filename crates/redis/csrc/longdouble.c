/*
 * Floating-point parsing and printing exactly as Redis 7.0 does it: long
 * double arithmetic for INCRBYFLOAT, and sorted-set scores (at the end).
 *
 * For INCRBYFLOAT, Redis parses with strtold, adds in long double (x87
 * 80-bit on x86_64) and prints with "%.17Lf" before trimming trailing
 * zeros. Rust has no long
 * double, and f64 gives different digits ("0.1" + "0.2" is "0.3" in Redis,
 * 0.30000000000000004 in f64), so this small file does exactly what the
 * Redis source does.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LONG_DOUBLE_CHARS (5 * 1024)

/* Redis's string2ld (util.c). */
static int string2ld(const char *s, size_t slen, long double *dp) {
    char buf[MAX_LONG_DOUBLE_CHARS];
    long double value;
    char *eptr;

    if (slen == 0 || slen >= sizeof(buf)) return 0;
    memcpy(buf, s, slen);
    buf[slen] = '\0';

    errno = 0;
    value = strtold(buf, &eptr);
    if (isspace((unsigned char)buf[0]) || eptr[0] != '\0' ||
        (size_t)(eptr - buf) != slen ||
        (errno == ERANGE &&
         (value == HUGE_VALL || value == -HUGE_VALL || fpclassify(value) == FP_ZERO)) ||
        errno == EINVAL || isnan(value))
        return 0;

    if (dp) *dp = value;
    return 1;
}

/* Redis's ld2string in LD_STR_HUMAN mode (util.c). */
static int ld2string_human(char *buf, size_t len, long double value) {
    int l = snprintf(buf, len, "%.17Lf", value);
    if (l < 0 || (size_t)l + 1 > len) return 0;
    if (strchr(buf, '.') != NULL) {
        char *p = buf + l - 1;
        while (*p == '0') {
            p--;
            l--;
        }
        if (*p == '.') l--;
    }
    if (l == 2 && buf[0] == '-' && buf[1] == '0') {
        buf[0] = '0';
        l = 1;
    }
    buf[l] = '\0';
    return l;
}

/*
 * current (may be absent: has_current == 0) + increment, formatted into out.
 * Returns 0 on success, 1 if either operand is not a valid float, 2 if the
 * result is NaN or infinite, 3 if out is too small.
 */
int ekv_incrbyfloat(const char *current, size_t current_len, int has_current,
                    const char *increment, size_t increment_len,
                    char *out, size_t out_cap, size_t *out_len) {
    long double value = 0, incr;
    if (has_current && !string2ld(current, current_len, &value)) return 1;
    if (!string2ld(increment, increment_len, &incr)) return 1;
    value += incr;
    if (isnan(value) || isinf(value)) return 2;
    int l = ld2string_human(out, out_cap, value);
    if (l == 0) return 3;
    *out_len = (size_t)l;
    return 0;
}

/* Whether s is a float Redis accepts (string2ld). */
int ekv_is_long_double(const char *s, size_t len) {
    return string2ld(s, len, NULL);
}

/*
 * Doubles for sorted sets, as Redis 7.0 parses and prints them. Rust's own
 * parser accepts a different language than strtod (no hexadecimal floats,
 * no leading whitespace in ranges) and Rust has no "%.17g", so these follow
 * the C library exactly as Redis uses it.
 */

/* Redis's string2d (util.c): the whole of s, no leading space, no NaN, no
 * overflow. s need not be NUL-terminated; a copy is. */
int ekv_string2d(const char *s, size_t slen, double *out) {
    char *buf;
    char *eptr;
    double value;
    int ok;

    if (slen == 0 || isspace((unsigned char)s[0])) return 0;
    buf = malloc(slen + 1);
    if (buf == NULL) return 0;
    memcpy(buf, s, slen);
    buf[slen] = '\0';
    errno = 0;
    value = strtod(buf, &eptr);
    ok = (size_t)(eptr - buf) == slen &&
         !(errno == ERANGE &&
           (value == HUGE_VAL || value == -HUGE_VAL || fpclassify(value) == FP_ZERO)) &&
         !isnan(value);
    free(buf);
    if (ok) *out = value;
    return ok;
}

/* One end of a score range as zslParseRange reads it: strtod up to the
 * first NUL, which must end the number; no NaN. An empty string is 0. */
int ekv_range_strtod(const char *s, size_t slen, double *out) {
    char *buf;
    char *eptr;
    double value;
    int ok;

    buf = malloc(slen + 1);
    if (buf == NULL) return 0;
    memcpy(buf, s, slen);
    buf[slen] = '\0';
    value = strtod(buf, &eptr);
    ok = eptr[0] == '\0' && !isnan(value);
    free(buf);
    if (ok) *out = value;
    return ok;
}

/* "%.17g", as addReplyDouble prints a score. Returns the length written,
 * or 0 if out is too small. */
size_t ekv_format_g17(double value, char *out, size_t cap) {
    int l = snprintf(out, cap, "%.17g", value);
    if (l < 0 || (size_t)l >= cap) return 0;
    return (size_t)l;
}

/* A SORT weight as sortCommandGeneric reads it: strtod up to the first
 * NUL, which must end the number; no NaN, nothing out of range. */
int ekv_sort_strtod(const char *s, size_t slen, double *out) {
    char *buf;
    char *eptr;
    double value;
    int ok;

    buf = malloc(slen + 1);
    if (buf == NULL) return 0;
    memcpy(buf, s, slen);
    buf[slen] = '\0';
    errno = 0;
    value = strtod(buf, &eptr);
    ok = eptr[0] == '\0' && errno != ERANGE && !isnan(value);
    free(buf);
    if (ok) *out = value;
    return ok;
}

/* A blocking command's timeout in seconds, as getTimeoutFromObjectOrReply
 * reads it: a long double, turned into milliseconds rounded up, converted
 * to long long as x86 converts (a value past the range becomes LLONG_MIN,
 * which Redis then calls negative). Returns 0 on success, 1 if s is not a
 * number. */
int ekv_timeout_seconds_ms(const char *s, size_t slen, long long *out_ms) {
    long double seconds;
    long double ms;
    if (!string2ld(s, slen, &seconds)) return 1;
    ms = ceill(seconds * 1000.0L);
    if (!(ms < 9223372036854775808.0L) || !(ms >= -9223372036854775808.0L))
        *out_ms = LLONG_MIN;
    else
        *out_ms = (long long)ms;
    return 0;
}

/* strtod over the bytes (up to the first NUL, as C sees them): the value
 * and how many bytes it used (0: no number). What lua-cjson's decoder and
 * Lua's own conversions read. */
size_t ekv_strtod_prefix(const char *s, size_t slen, double *out) {
    char *buf;
    char *eptr;
    size_t used;

    buf = malloc(slen + 1);
    if (buf == NULL) return 0;
    memcpy(buf, s, slen);
    buf[slen] = '\0';
    *out = strtod(buf, &eptr);
    used = (size_t)(eptr - buf);
    free(buf);
    return used;
}

/* `%.<precision>g` (Lua's number format is %.14g). */
size_t ekv_format_g(double value, int precision, char *out, size_t cap) {
    int l = snprintf(out, cap, "%.*g", precision, value);
    if (l < 0 || (size_t)l >= cap) return 0;
    return (size_t)l;
}
