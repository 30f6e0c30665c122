"""Groups: a pure planner, the GroupSupervisor actor and one InstanceActor per logical instance."""
