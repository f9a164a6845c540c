from setuptools import find_packages, setup

package_name = 'dp_policy'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='dp_ros developers',
    maintainer_email='dev@dp-ros.invalid',
    description='Diffusion Policy as a ROS-free library: model, sampling, data, training, checkpoints.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'dp_train = dp_policy.training.cli:main',
            'dp_bag_to_lerobot = dp_policy.data.lerobot:main',
        ],
    },
)
