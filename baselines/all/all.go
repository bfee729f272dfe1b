// Package all links every baseline into a binary, so that their init
// functions register them with package baselines. Import it for its side
// effect: import _ "github.com/maddr-project/maddr/baselines/all".
package all

import (
	_ "github.com/maddr-project/maddr/baselines/ae"
	_ "github.com/maddr-project/maddr/baselines/dpa"
	_ "github.com/maddr-project/maddr/baselines/fanogan"
	_ "github.com/maddr-project/maddr/baselines/ganomaly"
	_ "github.com/maddr-project/maddr/baselines/memae"
)
