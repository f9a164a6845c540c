from setuptools import find_packages, setup

package_name = 'dp_policy_node'

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
    description='policy_node: runs a dp_policy checkpoint on ROS 2 camera and joint-state topics.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'policy_node = dp_policy_node.policy_node:main',
        ],
    },
)
