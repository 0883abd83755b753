"""Training of the catalog's dense classifiers (MNIST digits, ASL letters) into the BentoML model store.

Rooms: ``config`` (every option of a run, its presets and the generated command line), ``datasets``
(loading and checking the data files, the downloads), ``models`` (the network and its training-only
layers), ``train`` (a run, step by step: fit, evaluate, calibrate, report, save), ``calibration``
(temperature scaling, ECE), ``lighting`` and ``lit`` (uneven light, lit evaluation photos),
``reports`` (plots and JSON), ``store`` (the BentoML model entry and its metadata), ``quiet``
(TensorFlow's start-up lines), ``linear`` (the course's y = mx + b).
"""
