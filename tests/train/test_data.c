#include <criterion/criterion.h>
Test(data, todo) {}
