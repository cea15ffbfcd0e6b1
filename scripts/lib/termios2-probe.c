/* Does this (emulated) Linux configure a terminal the way the serialport crate does?
 * serialport sets the line with termios2 (TCGETS2/TCSETS2); qemu-user before 10.2 answers
 * ENOSYS, and the daemon's serial tests then cannot open a port. scripts/cross-build
 * builds this statically for each ARM target and runs it under the qemu it means to use.
 * Exit 0 and "termios2 ok" when both ioctls work on a pseudo-terminal. */
#include <asm/termbits.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void) {
    struct termios2 t;
    int fd = open("/dev/ptmx", O_RDWR | O_NOCTTY);
    if (fd < 0) {
        perror("open /dev/ptmx");
        return 2;
    }
    if (ioctl(fd, TCGETS2, &t) < 0) {
        perror("TCGETS2");
        return 1;
    }
    if (ioctl(fd, TCSETS2, &t) < 0) {
        perror("TCSETS2");
        return 1;
    }
    close(fd);
    puts("termios2 ok");
    return 0;
}
