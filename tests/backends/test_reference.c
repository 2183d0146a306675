#include <criterion/criterion.h>

#include "backends/backend.h"

Test(reference, cpu_device_exists)
{
    sl_device *dev = NULL;
    cr_assert_eq(sl_device_open("cpu", &dev), SL_OK, "%s", sl_last_error());
    sl_device_close(dev);
}
