#!/usr/bin/env bash
# Packs a qyolo binary for a GPU machine that lacks its Debian libraries: the binary, stripped,
# and every library it links but the C/C++ runtime's (and, with --without-torch, LibTorch's and
# CUDA's, which that machine's torch install has; the CUDA runtime qyolo's own kernels linked
# stays), as <out>/cli.tar.xz with cli/qyolo and cli/lib/. Used by prepare_cli.sh and
# bench/qat_gpu/prepare.sh.
#
#   bash bench/cuda_engine/pack_cli.sh <qyolo binary> <out dir> [--without-torch]
set -euo pipefail
binary=${1:?usage: pack_cli.sh <qyolo binary> <out dir> [--without-torch]}
out=${2:?usage: pack_cli.sh <qyolo binary> <out dir> [--without-torch]}
without_torch=${3:-}
stage=$(mktemp -d)
mkdir -p "$stage/cli/lib"
strip -o "$stage/cli/qyolo" "$binary"
ldd "$binary" | awk '/=> \// {print $3}' | while read -r lib; do
  case $(basename "$lib") in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libgcc_s.so*|libstdc++.so*|ld-linux*) ;;
    libcudart.so*) cp -L "$lib" "$stage/cli/lib/" ;;
    libtorch*|libc10*|libcu*|libnccl*|libnv*)
      [ "$without_torch" = --without-torch ] || cp -L "$lib" "$stage/cli/lib/" ;;
    *) cp -L "$lib" "$stage/cli/lib/" ;;
  esac
done
mkdir -p "$out"
tar -C "$stage" -cJf "$out/cli.tar.xz" cli
rm -rf "$stage"
