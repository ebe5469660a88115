// posix_spawn file actions that Swift's Glibc module does not export.
//
// glibc 2.34+: closes every descriptor >= from in the child, after the file actions added before it (race-free,
// unlike enumerating /proc/self/fd in the parent while other threads open descriptors). Declared with an opaque
// pointer (pass &posix_spawn_file_actions_t) so this module defines no type of its own.
extern int posix_spawn_file_actions_addclosefrom_np(void *actions, int from);
