from setuptools import find_packages, setup

package_name = 'dp_eval'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['report_rows.yaml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='dp_ros developers',
    maintainer_email='dev@dp-ros.invalid',
    description='Rosbag-based evaluation of Diffusion Policy checkpoints: offline replay, live '
                'replay, closed loop, reports.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'dp_eval = dp_eval.cli:main',
            'dp_bag_play = dp_eval.player:main',
        ],
    },
)
