#include <criterion/criterion.h>
Test(links, placeholder) {}
