from glob import glob

from setuptools import find_packages, setup

package_name = 'dp_sim'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['parameters/*.yaml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml', 'README.md']),
        ('share/' + package_name + '/description', glob('description/*')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='dp_ros developers',
    maintainer_email='dev@dp-ros.invalid',
    description='Embedded MuJoCo simulation of a planar arm speaking ros2_control topic interfaces, scripted demonstrator and rosbag2 recorder.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'sim_node = dp_sim.sim_node:main',
            'demonstrator_node = dp_sim.demonstrator_node:main',
            'recorder_node = dp_sim.recorder_node:main',
            'dp_record_demos = dp_sim.record_demos:main',
        ],
    },
)
