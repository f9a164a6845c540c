from setuptools import find_packages, setup

package_name = 'dp_controller'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={package_name: ['parameters/*.yaml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='dp_ros developers',
    maintainer_email='dev@dp-ros.invalid',
    description='Trajectory follower: ROS-free core (plan, splines, blending, limits, watchdog) and follower_node for ros2_control.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'follower_node = dp_controller.follower_node:main',
        ],
    },
)
