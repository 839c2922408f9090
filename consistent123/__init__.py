"""Consistent123: single image -> consistent textured 3D asset with 3D then blended 2D/3D diffusion priors.

The rooms, from the top floor down (``[tool.importlinter]`` in pyproject.toml keeps them so):

    cli.py, commands/     one thin module per sub-command: arguments in, library call, one line out
    experiments/          measurements built from the method and eval (the known-answer benchmark)
    (eval, a sibling package: metrics, protocols and tables; imports the method)
    pipeline/             a reconstruction's lifecycle and what it leaves behind (views, mesh, turntable)
    training/             the two-stage loop, its per-iteration plan, optimiser, checkpoints, speed switches
    preprocess/           one photo -> a case folder (mask, recentre, depth, caption)
    tracking/             MLflow: the store, one run per case, the sweep's parent run
    priors/               the diffusion priors, the oracle, provenance, the random-weight stand-ins
    fields/, render/      NeRF and DMTet, hash grid, cameras, volume renderer and rasteriser
    losses.py             every loss term
    case.py, run_folder.py, meshes.py, images.py, backends.py, locks.py, device.py
                          the case and run folder formats, mesh I/O, compositing, backends, locks
    config.py, io.py, errors.py

The rule: the method (fields, render, priors, training) never imports eval, experiments or
commands; eval imports the method; experiments and commands import both.
"""

__version__ = "0.1.0"
