# dp_ros: every target sets the workspace up first (idempotent, ~0 s when nothing changed).
#   make demo    set up, then run the main job on the embedded simulation
#   make test    set up, then run every test (core, node, whole-graph)
#   make bench   set up, then print the benchmark tables
#   make demos   record demonstration bags with the scripted demonstrator (embedded simulation)
#   make train   train a checkpoint from `make demos` in a 9-minute budget (fixed seed)
#   make ros2-control  build the real ros2_control (controller_manager, JTC, ...) and ros2 launch for their tests
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := . scripts/env.sh
PYTEST_ARGS ?=

.PHONY: help setup test test-fast demo bench demos train ros2-control clean

help:
	@sed -n '1,7p' Makefile | sed 's/^# //'

setup:
	@bash scripts/setup.sh

test: setup
	@bash scripts/ros2_control/build.sh --if-built
	@bash scripts/ros2_control/launch.sh --if-built
	@bash scripts/browser.sh
	@$(ENV) && python -m pytest $(PYTEST_ARGS)

test-fast: setup
	@$(ENV) && python -m pytest -m "not slow" $(PYTEST_ARGS)

demo: setup
	@$(ENV) && bash scripts/demo.sh

bench: setup
	@$(ENV) && bash scripts/bench.sh

demos: setup
	@$(ENV) && bash scripts/demos.sh

train: setup
	@$(ENV) && bash scripts/train.sh

ros2-control: setup
	@bash scripts/ros2_control/build.sh
	@bash scripts/ros2_control/launch.sh

clean:
	rm -rf build install log
