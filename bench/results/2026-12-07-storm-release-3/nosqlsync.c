/* Ablation for measurement only (issue 24): fsync/fdatasync become no-ops on
 * SQLite's threads (sqlx's "sqlx-sqlite-worker-N"), every other sync runs.
 * LD_PRELOAD=nosqlsync.so kefu-server …: Kefu as if SQLite never synced. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <sys/prctl.h>

static int sqlite_thread(void) {
    char name[17] = {0};
    prctl(PR_GET_NAME, name, 0, 0, 0);
    return strncmp(name, "sqlx-sqlite", 11) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return sqlite_thread() ? 0 : real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return sqlite_thread() ? 0 : real(fd);
}
