#!/bin/sh
# Unpacks the CPython build of a JavaCPP Presets `org.bytedeco:cpython` jar (PYTHON312_MAVEN in
# contents.env, the linux-x86_64 classifier) into PREFIX as a plain Python installation:
#
#   PREFIX/bin/python3.12 (and a python3 link), PREFIX/lib/libpython3.12.so.1.0,
#   PREFIX/lib/python3.12/ (the standard library; lib-dynload holds the C modules)
#
# The jar's binaries look for libpython in $ORIGIN/../lib (RUNPATH), so the prefix can be
# anywhere. Its `_ctypes` needs the libffi.so.7 the jar ships (Debian bookworm has libffi8), and
# finds it beside itself in lib-dynload. The C modules link OpenSSL 3 statically; the other
# libraries they need (libz, libbz2, liblzma, libsqlite3, libreadline, libncursesw, libuuid,
# libcrypt) are the ones bookworm's python3 needs too. Left out: the test suite, IDLE, tkinter
# (no _tkinter in the build), turtledemo, the headers, the base install's pip (venvs get theirs
# from ensurepip), the scripts whose shebangs name the build machine, and the JNI library.
#
# Usage: install-python.sh JAR PREFIX   (needs unzip; PREFIX must not exist yet)
# Shared by build.sh (on the host, into the rootfs) and the Dockerfile (in the image).
set -eu

jar="${1:?usage: install-python.sh JAR PREFIX}"
prefix="${2:?usage: install-python.sh JAR PREFIX}"
[ ! -e "$prefix" ] || { echo "install-python.sh: $prefix exists" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

unzip -q "$jar" 'org/bytedeco/cpython/linux-x86_64/*' -d "$tmp"
src="$tmp/org/bytedeco/cpython/linux-x86_64"
[ -f "$src/bin/python3.12" ] && [ -f "$src/libpython3.12.so.1.0" ] && [ -d "$src/lib/python3.12" ] ||
  { echo "install-python.sh: $jar has no linux-x86_64 CPython 3.12" >&2; exit 1; }

mkdir -p "$prefix/bin" "$prefix/lib"
install -m 0755 "$src/bin/python3.12" "$prefix/bin/python3.12"
ln -s python3.12 "$prefix/bin/python3"
install -m 0755 "$src/libpython3.12.so.1.0" "$prefix/lib/libpython3.12.so.1.0"
mv "$src/lib/python3.12" "$prefix/lib/python3.12"
install -m 0755 "$src/libffi.so.7" "$prefix/lib/python3.12/lib-dynload/libffi.so.7"
lib="$prefix/lib/python3.12"
rm -rf "$lib/test" "$lib/idlelib" "$lib/tkinter" "$lib/turtledemo" "$lib/turtle.py" \
  "$lib/site-packages/pip" "$lib/site-packages"/pip-*.dist-info
find "$prefix" -depth -type d -name __pycache__ -exec rm -rf {} +
chmod -R u=rwX,go=rX "$prefix"
