// Activations and their derivatives, shared by act_forward.comp and act_backward.comp.
// Codes follow enum sl_activation: 0 relu, 1 tanh, 2 sigmoid, 3 gelu (exact, with erf), 4 gelu_tanh
// (PyTorch's tanh form).
const float GELU_K = 0.7978845608028654;
const float GELU_C = 0.044715;
const float SQRT1_2 = 0.70710678118654752;
const float INV_SQRT2PI = 0.39894228040143268;

// GLSL has no erf. Below |x| = 0.75 its Maclaurin series to x^25 (the next term is under 1e-12);
// above, 1 - erfc with the Chebyshev fit of Numerical Recipes' erfcc (fractional error under
// 1.2e-7). Against double erf, evaluated in fp32 on the host, the largest error over [-10, 10] is
// 1.3e-7 absolute (2 ulp near 0.75), where erff from glibc gives 5e-8; Abramowitz-Stegun 7.1.26
// would give 1.5e-7 from the fit alone, before rounding. The driver's exp adds its own error
// (GLSL allows 3 + 2|x| ulp).
float erf_approx(float x)
{
    float z = abs(x);
    if (z < 0.75) {
        float s = x * x;
        float r = -1.0892221e-9;
        r = r * s + 1.3122533e-8;
        r = r * s - 1.4503852e-7;
        r = r * s + 1.4589169e-6;
        r = r * s - 1.3227513e-5;
        r = r * s + 1.0683761e-4;
        r = r * s - 7.5757576e-4;
        r = r * s + 4.6296296e-3;
        r = r * s - 2.3809524e-2;
        r = r * s + 0.1;
        r = r * s - 0.33333333;
        r = r * s + 1.0;
        return 1.1283791670955126 * x * r; // 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
    }
    float t = 1.0 / (1.0 + 0.5 * z);
    float poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                 t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                 t * (-0.82215223 + t * 0.17087277))))))));
    float r = 1.0 - t * exp(-z * z + poly);
    return x < 0.0 ? -r : r;
}

// tanh through exp can overflow to inf/inf = NaN for large |x| on some drivers; fp32 tanh is
// exactly +-1 beyond |x| = 10, so clamping keeps the value and avoids the NaN.
float safe_tanh(float x)
{
    return tanh(clamp(x, -10.0, 10.0));
}

float act_f(uint act, float x)
{
    if (act == 0u) return x > 0.0 ? x : 0.0;
    if (act == 1u) return safe_tanh(x);
    if (act == 2u) return 1.0 / (1.0 + exp(-x));
    if (act == 3u) return 0.5 * x * (1.0 + erf_approx(x * SQRT1_2));
    return 0.5 * x * (1.0 + safe_tanh(GELU_K * (x + GELU_C * x * x * x)));
}

float act_df(uint act, float x)
{
    if (act == 0u) return x > 0.0 ? 1.0 : 0.0;
    if (act == 1u) {
        float t = safe_tanh(x);
        return 1.0 - t * t;
    }
    if (act == 2u) {
        float s = 1.0 / (1.0 + exp(-x));
        return s * (1.0 - s);
    }
    if (act == 3u) return 0.5 * (1.0 + erf_approx(x * SQRT1_2)) + x * exp(-0.5 * x * x) * INV_SQRT2PI;
    float t = safe_tanh(GELU_K * (x + GELU_C * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_C * x * x);
}

vec4 act_f4(uint act, vec4 x)
{
    return vec4(act_f(act, x.x), act_f(act, x.y), act_f(act, x.z), act_f(act, x.w));
}

vec4 act_df4(uint act, vec4 x)
{
    return vec4(act_df(act, x.x), act_df(act, x.y), act_df(act, x.z), act_df(act, x.w));
}
