/* Tests that cannot pass by accident: SLUICE_REQUIRE_DEVICES lists the backends that must have a
 * device here ("opencl,vulkan"; scripts/test sets it on the machines it installs PoCL and lavapipe
 * on). A suite that finds no device of a backend calls sl_test_no_device(): the test fails when
 * the backend is required and is skipped otherwise, so a developer's machine without a driver
 * still runs the rest. Any suite may include this header; it needs only Criterion and
 * backends/backend.h. */
#ifndef SL_TEST_REQUIRE_DEVICES_H
#define SL_TEST_REQUIRE_DEVICES_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"

/* Whether SLUICE_REQUIRE_DEVICES, a comma list with optional spaces, names `backend`. */
static inline bool sl_test_device_required(const char *backend)
{
    const char *list = getenv("SLUICE_REQUIRE_DEVICES");
    size_t len = strlen(backend);
    for (const char *p = list; p && *p;) {
        p += strspn(p, ", \t");
        size_t n = strcspn(p, ", \t");
        if (n == len && !strncmp(p, backend, len)) return true;
        p += n;
    }
    return false;
}

/* The Debian package that gives `backend` a device on a machine without a GPU, for messages. */
static inline const char *sl_test_device_package(const char *backend)
{
    if (!strcmp(backend, "opencl")) return "pocl-opencl-icd (PoCL's CPU device)";
    if (!strcmp(backend, "vulkan")) return "mesa-vulkan-drivers (Mesa's lavapipe CPU device)";
    return "the backend's driver";
}

/* The id of the first device of `backend` ("opencl:0"), or NULL when it has none. */
static inline const char *sl_test_first_device(const char *backend)
{
    const sl_device_info *infos;
    size_t count;
    if (sl_device_list(&infos, &count) != SL_OK) return NULL;
    for (size_t i = 0; i < count; i++)
        if (!strcmp(infos[i].backend, backend)) return infos[i].id;
    return NULL;
}

/* Ends the current test (or suite set-up) because `backend` has no device: a failure when
 * SLUICE_REQUIRE_DEVICES names the backend, else a skip. `problems` says why there is none
 * (sl_device_list_problems(), or NULL). */
static inline void sl_test_no_device(const char *backend, const char *problems)
{
    if (!problems || !problems[0]) problems = "(no problem reported)";
    if (sl_test_device_required(backend))
        cr_assert_fail("no %s device, and SLUICE_REQUIRE_DEVICES=%s requires one; install %s, or "
                       "take %s out of SLUICE_REQUIRE_DEVICES to skip these tests. Problems: %s",
                       backend, getenv("SLUICE_REQUIRE_DEVICES"), sl_test_device_package(backend),
                       backend, problems);
    cr_skip_test("no %s device (install %s; set SLUICE_REQUIRE_DEVICES=%s to make this a "
                 "failure): %s",
                 backend, sl_test_device_package(backend), backend, problems);
}

#endif
