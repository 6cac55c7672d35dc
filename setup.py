from setuptools import find_packages, setup


def read_requirements(path: str):
    with open(path) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith(('#', '-'))]


def get_version() -> str:
    scope: dict = {}
    exec(open('mmfacekd/version.py').read(), scope)
    return scope['__version__']


setup(
    name='mmfacekd',
    version=get_version(),
    description='Knowledge distillation for face recognition on MMEngine '
    '(GKD, CAKD and baselines)',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    python_requires='>=3.9',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require=dict(tests=read_requirements('requirements/tests.txt')),
    license='Apache-2.0',
    zip_safe=False,
)
