/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz: the one entry point every fuzz target defines. Built with -Dfuzz=true (clang), libFuzzer
 * calls it; otherwise replay.c's main() calls it once per file of the committed seed corpus, so
 * every CI run exercises the decoders on those inputs even with gcc.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
