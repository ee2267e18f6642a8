"""Writes stand-in shared libraries for the CUDA libraries that PyPI torch's binaries link
against but that CPU use never calls (cuDNN, cuBLAS, cuSPARSE, cuFFT, cuRAND, NCCL,
NVSHMEM, cuFile, cuSPARSELt): the real wheels are about 2 GB. Each stub defines exactly
the symbols (with their ELF version nodes) that the torch libraries import from it, every
one a function that prints the symbol name and aborts, so any accidental CUDA call fails
loudly instead of doing something wrong. Used by scripts/setup-python.sh.

usage: python cuda-stubs.py <torch/lib dir> <extra lib dir with real libs>..."""
import collections, glob, os, subprocess, sys, tempfile

lib_dir, extra = sys.argv[1], sys.argv[2:]
importers = ["libtorch_python.so", "libtorch_cuda.so", "libc10_cuda.so", "libtorch_nvshmem.so"]


def nm(path, undefined):
    flags = ["--undefined-only"] if undefined else ["--defined-only"]
    out = subprocess.run(["nm", "-D", *flags, path], check=True, capture_output=True, text=True).stdout
    # weak undefined symbols (TLS init hooks, __gmon_start__) stay undefined on purpose
    return [l.split()[-1] for l in out.splitlines() if l.split() and not (undefined and l.split()[0] in "wv")]


def soname_needed(path):
    out = subprocess.run(["readelf", "-d", path], check=True, capture_output=True, text=True).stdout
    return [l.split("[")[1].rstrip("]") for l in out.splitlines() if "(NEEDED)" in l]


# stubs of an earlier run are not "present": remove them and make them again
record = os.path.join(lib_dir, ".cuda-stubs")
if os.path.exists(record):
    for old in open(record).read().split():
        if os.path.exists(os.path.join(lib_dir, old)):
            os.remove(os.path.join(lib_dir, old))
present = set(os.listdir(lib_dir))
for d in extra:
    present |= set(os.listdir(d))
system = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libstdc++.so.6",
          "libgcc_s.so.1", "ld-linux-x86-64.so.2"}
missing = sorted({n for f in importers for n in soname_needed(os.path.join(lib_dir, f))} - present - system)
# symbols defined by everything that is really there
defined = set()
real = [os.path.join(lib_dir, f) for f in os.listdir(lib_dir) if ".so" in f and not os.path.islink(os.path.join(lib_dir, f))]
for d in extra:
    real += [os.path.join(d, f) for f in os.listdir(d) if ".so" in f]
for p in real:
    try:
        defined |= {s.split("@")[0] for s in nm(p, False)}
    except subprocess.CalledProcessError:
        pass
for so in ["libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1"]:
    for cand in glob.glob(f"/lib/x86_64-linux-gnu/{so}") + glob.glob(f"/usr/lib/x86_64-linux-gnu/{so}"):
        defined |= {s.split("@")[0] for s in nm(cand, False)}


def version_files(path):
    """ELF version name -> the library (File:) it is required from, from .gnu.version_r."""
    out = subprocess.run(["readelf", "-V", path], check=True, capture_output=True, text=True).stdout
    m, current = {}, None
    for line in out.splitlines():
        if "File:" in line:
            current = line.split("File:")[1].split()[0]
        elif "Name:" in line and current and "version_r" not in line:
            m[line.split("Name:")[1].split()[0]] = current
    return m


# lib -> version node -> symbols; unversioned symbols go into the first missing library
# the importing binary needs (any library in its dependency list satisfies them)
by_lib = collections.defaultdict(lambda: collections.defaultdict(set))
for f in importers:
    path = os.path.join(lib_dir, f)
    vf = version_files(path)
    own_missing = [n for n in soname_needed(path) if n in missing]
    for sym in nm(path, True):
        name, _, ver = sym.partition("@")
        if name in defined or name.startswith(("__gmon", "_ITM", "_Jv")):
            continue
        lib = vf.get(ver)
        if lib in missing:
            by_lib[lib][ver].add(name)
        elif not ver and own_missing:
            by_lib[own_missing[0]][own_missing[0]].add(name)
with tempfile.TemporaryDirectory() as tmp:
    for lib in missing:
        nodes = by_lib.get(lib, {}) or {lib: set()}
        syms = sorted({x for v in nodes.values() for x in v})
        src = os.path.join(tmp, "stub.c")
        with open(src, "w") as f:
            f.write("#include <stdio.h>\n#include <stdlib.h>\n")
            f.write("static void die(const char *s) { fprintf(stderr, \"CUDA stub %s called: this torch is CPU-only\\n\", s); abort(); }\n")
            for s in syms:
                f.write(f"void {s}(void) {{ die(\"{s}\"); }}\n")
        vs = os.path.join(tmp, "v.map")
        with open(vs, "w") as f:
            for ver, vsyms in sorted(nodes.items()):
                glob_part = f"global: {' '.join(x + ';' for x in sorted(vsyms))} " if vsyms else ""
                f.write(f"{ver or lib} {{ {glob_part}local: *; }};\n")
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", os.path.join(lib_dir, lib), f"-Wl,-soname,{lib}",
                        f"-Wl,--version-script={vs}", src], check=True)
        print(f"stub {lib}: {len(syms)} symbols")
with open(record, "w") as f:
    f.write("\n".join(missing) + "\n")
