/* Without a Vulkan loader (SLUICE_VK_LOADER names a library that does not exist) the Vulkan
 * backend reports itself unavailable and the rest of sluice still works. */
#include <criterion/criterion.h>
#include <string.h>

#include "backends/backend.h"

Test(vulkan_noloader, backend_unavailable_rest_works)
{
    const sl_device_info *infos;
    size_t count;
    cr_assert_eq(sl_device_list(&infos, &count), SL_OK);
    for (size_t i = 0; i < count; i++)
        cr_assert_neq(strcmp(infos[i].backend, "vulkan"), 0, "listed %s", infos[i].id);
    const char *problems = sl_device_list_problems();
    cr_assert(strstr(problems, "vulkan: the Vulkan loader"), "problems: %s", problems);
    sl_device *cpu = NULL;
    cr_assert_eq(sl_device_open("cpu", &cpu), SL_OK);
    sl_device_close(cpu);
    sl_device *dev = NULL;
    cr_assert_eq(sl_device_open("vulkan:0", &dev), SL_EINVAL);
}
