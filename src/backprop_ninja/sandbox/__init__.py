"""The sandbox every piece of a student's code runs in: how it is built, limited and cleaned up.

    build.py    the mounts; bubblewrap's command line or a forked child's confinement spec;
                ``SandboxedProcess`` (kernels and verifier children)
    cgroups.py  a cgroup per sandbox: memory and process-count limits, removal of left-overs
    limits.py   what one sandbox may use; the rlimits that cap each process
    enforced.py which limits hold on this machine and by what (the line the grader prints)
    outside.py  a root grader's bubblewrap started as the sandbox's user (nobody) outside too
    seccomp.py  the system-call filter both ways of building a sandbox load (libseccomp)
    untrusted.py  reading a file a sandbox made (no FIFO, link, device or oversized file)

The steps a forked child takes to confine itself live in ``forkserver/confine.py`` (stdlib only).
"""
