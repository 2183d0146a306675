// Shared by the *_tex.comp elementwise kernels: four elements per invocation, read through rgba32f
// uniform texel buffers and written as vec4s to storage buffers. lavapipe (Mesa 22.3) loads a
// storage buffer lane by lane and component by component, but fetches texels as a vector: on
// llvmpipe this made axpy about six times faster than scalar storage-buffer loads.
// Buffers are allocated in whole vec4s, so reading the last vec4 past n stays inside the buffer;
// writes past n are masked, since they would clobber the caller's data beyond n.
#define VEC4_INDEX() ((p.base + gl_WorkGroupID.x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x)

// arr[i] = r for the elements e = 4i .. 4i+3 that are below n.
#define STORE4(arr, i, n, r)                                                                       \
    if (4u * (i) + 4u <= (n)) {                                                                    \
        arr[i] = (r);                                                                              \
    } else {                                                                                       \
        arr[i].x = (r).x;                                                                          \
        if (4u * (i) + 1u < (n)) arr[i].y = (r).y;                                                 \
        if (4u * (i) + 2u < (n)) arr[i].z = (r).z;                                                 \
    }
