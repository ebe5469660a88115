// Linux event-loop system calls that Swift's Glibc module does not export.
#include <sys/epoll.h>
#include <sys/eventfd.h>
