#include <criterion/criterion.h>
Test(model, todo) {}
