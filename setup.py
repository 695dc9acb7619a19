"Package metadata for medseg_tutor, read from settings.ini (nbdev's settings are in pyproject.toml)."
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
c = cfg['DEFAULT']
req = lambda k: c.get(k, '').split()

setuptools.setup(
    name=c['lib_name'], version=c['version'], description=c['description'],
    long_description=(here/'README.md').read_text(encoding='utf-8'), long_description_content_type='text/markdown',
    license=c['license'], author=c['author'], author_email=c['author_email'], keywords=c['keywords'],
    url='https://github.com/medseg-tutor/medseg_tutor',
    classifiers=['Development Status :: 3 - Alpha', 'Intended Audience :: Science/Research', 'Intended Audience :: Education',
                 'Programming Language :: Python :: 3 :: Only', 'Topic :: Scientific/Engineering :: Medical Science Apps.',
                 'Topic :: Scientific/Engineering :: Artificial Intelligence'],
    python_requires=f">={c['min_python']}",
    packages=setuptools.find_packages(include=['medseg_tutor', 'medseg_tutor.*']),
    include_package_data=True, zip_safe=False,
    install_requires=req('requirements'),
    extras_require={'cuda': req('cuda_requirements'), '3d': req('3d_requirements'), 'dev': req('dev_requirements'),
                    'docs': req('docs_requirements'), 'course': req('course_requirements')},
    entry_points={'console_scripts': req('console_scripts'),
                  'nbdev': [f"{c['lib_name']}={c['lib_name']}._modidx:d"]},
)
