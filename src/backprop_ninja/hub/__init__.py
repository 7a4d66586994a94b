"""The course on a JupyterHub: accounts, each person's Lab by role, limits, the exchange.

    accounts.py   Unix accounts from a roster CSV: groups by role, first-login passwords, the gradebook
    labs.py       each Lab's Jupyter config by role (student: Validate + Assignment List;
                  instructor: the Formgrader too) and its cgroup (memory and CPU per Lab)
    spawner.py    CourseSpawner: JupyterHub's LocalProcessSpawner with the two above
    exchange.py   nbgrader's exchange with its documented permissions; releasing the notebooks
                  and the course's feedback pages into it
    __main__.py   ``python -m backprop_ninja.hub serve|users|release|release-feedback`` (the Makefile's hub targets)

grader/hub/jupyterhub_config.py is the hub's configuration; grader/README.md walks through a class.
Only spawner.py imports JupyterHub (the ``hub`` extra); the rest needs nbgrader at most.
"""
