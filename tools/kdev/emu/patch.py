# SPDX-License-Identifier: MIT
# kdev emu: copy jit/kernels to DST for g++: dynamic shared memory becomes
# the fake driver's buffer, the inline-PTX helpers of attn_common.cuh go
# (emu_rt.h has C++ versions), and every kernel registers itself by name.
#	patch.py SRC DST
import os, re, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
sm90_drop = ['wg_fence', 'wg_commit', 'wg_wait', 'wg_pin', 'fence_proxy_async', 'cp_async16_s', 'cp_async16_all', 'wgmma_ss_n128', 'wgmma_ss_n64', 'wgmma_ss_n32', 'wgmma_rs_n128', 'wgmma_rs_n64']
drop = ['fast_exp2','fast_log2','smem_u32','cp_async16','cp_async_commit','cp_async_wait_all','ldsm_x4','ldsm_x4_t','mma16816','pack2','fma2','prefetch_l2','unpack_lo','unpack_hi']

def drop_fn(s, name):
    """Remove helper @name (and the template line in front of a template):
    emu_rt.h has a C++ version of it."""
    m = re.search(r'(template <[^>]*>\n)?static __device__ __forceinline__ [\w ]+?\b' + name + r'\(', s)
    assert m, name
    end = s.index('\n}\n', m.start()) + 3
    return s[:m.start()] + s[end:]

for f in os.listdir(src):
    if not (f.endswith('.cu') or f.endswith('.cuh')): continue
    s = open(os.path.join(src, f)).read()
    # at file scope a macro (no initializer runs before a launch), else a local
    s = re.sub(r'^extern __shared__ __align__\(\d+\) ([\w ]+?) (\w+)\[\];', r'#define \2 ((\1 *)emu_smem())', s, flags=re.M)
    s = re.sub(r'extern __shared__ __align__\(\d+\) ([\w ]+?) (\w+)\[\];', r'\1 *\2 = (\1 *)emu_smem();', s)
    s = re.sub(r'extern "C" __global__ void __launch_bounds__\(([^)]*)\)\s*\n(\w+)\(const (\w+) p\)',
               lambda m: 'extern "C" void %s(const %s p);\nstatic emu_reg emu_reg_%s("%s", [](void *a) { %s(*(%s *)a); });\n%s' % (
                   m.group(2), m.group(3), m.group(2), m.group(2), m.group(2), m.group(3), m.group(0)), s)
    if f == 'attn_bwd_tile.cuh':
        for name in ['red_add_f32x2', 'red_add_f32x4']:
            s = drop_fn(s, name)
    if f == 'attn_sm90.cuh':
        for name in sm90_drop:
            s = drop_fn(s, name)
    if f == 'attn_common.cuh':
        for name in drop:
            s = drop_fn(s, name)
    open(os.path.join(dst, f), 'w').write(s)
