#include <criterion/criterion.h>
Test(torch, todo) {}
