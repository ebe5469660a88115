// glibc malloc controls (malloc_trim) that Swift's Glibc module does not export.
#include <malloc.h>
