import os
from glob import glob

from setuptools import find_packages, setup

package_name = 'dp_bringup'


def tree(folder):
    """data_files entries for every file under `folder` (launch/ and config/ are the workspace's)."""
    entries = {}
    for path in glob(os.path.join(folder, '**', '*'), recursive=True):
        if os.path.isfile(path):
            dest = os.path.join('share', package_name, os.path.dirname(path))
            entries.setdefault(dest, []).append(path)
    return sorted(entries.items())


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ] + tree('launch') + tree('config') + tree('models'),
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='dp_ros developers',
    maintainer_email='dev@dp-ros.invalid',
    description='Launch files, robot configurations and a process starter for dp_ros.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'dp_launch = dp_bringup.cli:main',
            'dp_mock_arm = dp_bringup.mock_arm:main',
        ],
    },
)
