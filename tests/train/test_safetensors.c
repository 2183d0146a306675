#include <criterion/criterion.h>
Test(safetensors, todo) {}
