"""The colorizer: a Beam preprocessing job, a tf.distribute trainer and serving front ends.

This is also the file Dataflow workers install from (`--setup_file ./setup.py`), so install_requires
holds what the workers need to run the pipeline, plus the serving app's web stack (fastapi, uvicorn: small
pure-Python wheels, so that one install serves every stage).
"""
import setuptools

setuptools.setup(
    name='colorizer',
    version='0.1.0',
    description='Greyscale photos in, believable colour out: Beam preprocessing, tf.distribute training, serving.',
    packages=setuptools.find_packages(include=['pipeline', 'pipeline.*', 'trainer', 'trainer.*',
                                               'serving', 'serving.*']),
    package_data={'serving': ['static/*']},
    python_requires='>=3.10,<3.13',
    install_requires=[
        'tensorflow>=2.21,<2.22',
        'tensorboard>=2.21,<2.22',  # TF 2.21 no longer installs it, and tf.summary needs it
        'apache-beam[gcp]>=2.77,<2.78',
        'tensorflow-datasets>=4.9.10,<4.10',
        'importlib_resources>=6',  # TFDS 4.9.10 imports it to prepare datasets but does not declare it
        'numpy>=1.26,<2.5',
        'protobuf>=6.31,<7',       # Beam needs <7, TensorFlow 2.21 >=6.31
        'absl-py>=2.1',
        'gcsfs>=2024.6',
        'tfrecord>=1.14',
        'google-crc32c>=1.5',      # the checksums of TFRecord framing (pipeline/schema.py), C-accelerated
        'pillow>=10',
        'scikit-image>=0.24',      # sample photos for the default run
        'scipy>=1.11',             # smoothing the ab prior (trainer/abbins.py)
        'tqdm>=4.66',
        'fastapi>=0.115,<1',       # the serving app's routes, errors and OpenAPI (serving/app.py)
        'uvicorn>=0.34,<1',        # its HTTP server (serving/server.py)
    ],
    extras_require={
        'gpu': ['tensorflow[and-cuda]>=2.21,<2.22'],
        'test': ['pytest>=8', 'playwright>=1.65',   # playwright drives Debian's chromium (make browser)
                 'gcp-storage-emulator>=2026.7.19',   # the GCS emulator of tests/gcs.py (batch copy: Beam's sinks)
                 'psutil>=5.9'],                      # server memory in the load tests and benchmarks/load.py
    },
)
