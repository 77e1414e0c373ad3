# First Flight: the example story of StoryMaker Studio (one character, four panels).
# The character's photo is examples/photos/astronaut.png (public domain, see photos/CREDITS.md).
title: First Flight
style: graphic novel, ink and watercolor, warm light
size: 768x1024

[Eileen] stands in front of a space shuttle on the launch pad at dawn
  pose: standing
  caption: Launch day.

[Eileen] waves to the crowd from the crew walkway
  pose: waving
  Eileen: "See you in a week!"

a space shuttle climbing into a clear blue sky on a column of fire
  caption: Lift-off.

[Eileen] floats inside the spacecraft, looking at the Earth through a round window
  caption: Home, seen from far away.
