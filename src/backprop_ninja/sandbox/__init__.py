"""The sandbox every piece of a student's code runs in: how it is built, limited and cleaned up.

    build.py    the mounts; bubblewrap's command line or a forked child's confinement spec;
                ``SandboxedProcess`` (kernels and verifier children)
    cgroups.py  a cgroup per sandbox: memory and process-count limits, removal of left-overs
    limits.py   what one sandbox may use

The steps a forked child takes to confine itself live in ``forkserver/confine.py`` (stdlib only).
"""
